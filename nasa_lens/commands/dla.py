"""``nasa-lens dla``: direct logit attribution per head, split by the source token it reads. Thin: the handler
builds its configs from the flags and calls :func:`nasa_lens.jobs.dla.run_dla`. (``nasa-lens paths`` is
:mod:`nasa_lens.commands.path_patching`.)"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nasa_lens.commands.common import add_data_args, add_model_args, add_out_arg, data_spec, model_spec
from nasa_lens.commands.flags import add_config_flags, config_from_args
from nasa_lens.commands.logs import progress_on
from nasa_lens.commands.tables import add_json_flag, print_table, say
from nasa_lens.jobs.dla import DLAConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dla",
        help="direct logit attribution of every head, split by source (via Yes / via No / other)",
        description="Each head's direct contribution to logit(Yes) - logit(No) at the answer position (final-norm "
        "scale frozen), split by the source token it reads: the instruction's Yes, its No, or the rest. Writes "
        "dla.csv, components.csv, copying.csv, per-example scores and figures.",
    )
    add_model_args(p)
    add_data_args(p)
    add_config_flags(p, DLAConfig, rename={"top_k": "top"})
    add_out_arg(p, "output folder")
    add_json_flag(p)
    p.set_defaults(func=_dla)


def _dla(args: argparse.Namespace) -> int:
    from nasa_lens.jobs.dla import run_dla

    cfg = config_from_args(DLAConfig, args)  # validated (with the model and data specs) before loading
    model, data = model_spec(args), data_spec(args)
    result = run_dla(cfg, Path(args.out), model=model, data=data, progress=progress_on(args))
    table = result.table().sort_values("via_no").head(min(cfg.top_k, result.n_layers * result.n_heads))
    say(args, result.summary(k=cfg.top_k))
    print_table(args, table, floatfmt="+.4f")
    say(args, f"wrote dla.csv, components.csv, copying.csv, dla_scores.* and figures in {args.out}")
    return 0


def __getattr__(name: str) -> Any:
    if name == "_paths":  # the paths handler moved with path patching
        import warnings

        from nasa_lens.commands import path_patching

        warnings.warn("nasa_lens.commands.dla._paths is deprecated; import it from nasa_lens.commands.path_patching",
                      DeprecationWarning, stacklevel=2)
        return path_patching._paths
    raise AttributeError(f"module 'nasa_lens.commands.dla' has no attribute {name!r}")
