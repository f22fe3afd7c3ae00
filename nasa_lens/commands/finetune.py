"""``nasa-lens finetune``: train a NASA adapter (head-restricted fine-tune) and write it with its metrics.

A thin layer over :class:`nasa_lens.finetune.NASAConfig` and :func:`nasa_lens.finetune.train_nasa`: the training
split of every ``--train`` dataset (label-balanced ``--limit`` each), ``--val-fraction`` of it held out for
validation (early stopping and ``metrics.json``), the test splits left untouched for ``nasa-lens eval
--adapter``. Writes ``OUT/adapter.safetensors``, ``OUT/adapter.json``, ``OUT/metrics.json``
(``{"before": {...}, "after": {...}}`` on the validation split), ``OUT/history.csv`` and
``OUT/checkpoints/checkpoint.pt`` (``--resume`` continues from it).
Every flag and its default come from :class:`~nasa_lens.finetune.NASAConfig` and
:class:`~nasa_lens.jobs.finetune.FinetuneJobConfig` (:mod:`nasa_lens.commands.flags`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from nasa_lens.commands.common import add_model_args, add_out_arg, model_spec
from nasa_lens.commands.flags import add_config_flags, config_from_args
from nasa_lens.commands.logs import progress_on
from nasa_lens.commands.tables import add_json_flag, print_table, say
from nasa_lens.finetune.config import NASAConfig
from nasa_lens.jobs.finetune import FinetuneJobConfig
from nasa_lens.vocab import ADAPTER_FILE, ADAPTER_META_FILE, HISTORY_FILE, METRICS_FILE


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune",
        help="NASA: fine-tune only the negative-attention heads' query (and key) rows; writes an adapter",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    add_model_args(p, adapter=False)
    add_config_flags(p, FinetuneJobConfig)
    add_config_flags(p, NASAConfig, exclude=("betas",), rename={"nas_positions": "positions"})
    add_out_arg(p, "output folder")
    add_json_flag(p)
    p.set_defaults(func=_finetune)


def _finetune(args: argparse.Namespace) -> int:
    from nasa_lens.jobs.finetune import run_finetune

    cfg = config_from_args(NASAConfig, args, progress=args.progress and progress_on(args))
    job = config_from_args(FinetuneJobConfig, args)
    out = Path(args.out)
    result = run_finetune(cfg, job, out, model=model_spec(args))
    say(args, result.summary())
    if result.before is not None and result.after is not None:  # validation metrics before and after
        print_table(args, [{"metric": key, "before": result.before.metrics[key], "after": result.after.metrics[key]}
                           for key in ("accuracy", "precision", "recall", "pr_gap", "yes_rate", "auroc")])
    say(args, f"wrote {out / ADAPTER_FILE}, {ADAPTER_META_FILE}, {METRICS_FILE} and {HISTORY_FILE} in {out}")
    return 0
