"""``nasa-lens paths``: path patching (sender head -> receiver head's q/k/v, or directly to the logits). Thin:
the handler builds its configs from the flags and calls :func:`nasa_lens.jobs.path_patching.run_paths`."""
from __future__ import annotations

import argparse
from pathlib import Path

from nasa_lens.commands.common import add_data_args, add_model_args, add_out_arg, data_spec, model_spec
from nasa_lens.commands.flags import add_config_flags, config_from_args
from nasa_lens.commands.logs import progress_on
from nasa_lens.commands.tables import add_json_flag, print_table, say
from nasa_lens.jobs.path_patching import PathsConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "paths",
        help="path patching: a sender head's effect through a receiver head's q, k or v, or directly",
        description="On counterfactual pairs (candidate order swapped, or gold answer flipped), add the sender's "
        "clean-minus-corrupted output to one receiver's query/key/value input (or to the final norm) and measure "
        "the normalised change of logit(Yes) - logit(No). Writes paths.csv and a senders x receivers heatmap per input.",
    )
    add_model_args(p)
    add_data_args(p)
    add_config_flags(p, PathsConfig)
    add_out_arg(p, "output folder")
    add_json_flag(p)
    p.set_defaults(func=_paths)


def _paths(args: argparse.Namespace) -> int:
    from nasa_lens.jobs.path_patching import run_paths

    cfg = config_from_args(PathsConfig, args)
    model, data = model_spec(args), data_spec(args)
    result = run_paths(cfg, Path(args.out), model=model, data=data, progress=progress_on(args))
    frame = result.to_dataframe().sort_values("normalized", key=abs, ascending=False).head(10)
    say(args, f"path patching, {result.kind} pairs (n={result.n}), gap {result.gap:+.3f}, {result.seconds:.0f} s")
    print_table(args, frame, ["sender", "receiver", "via", "normalized", "ci_low", "ci_high"], floatfmt="+.3f")
    say(args, f"wrote paths.csv and figures in {args.out}")
    return 0
