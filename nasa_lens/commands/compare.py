"""``nasa-lens compare``: de-biasing fixes side by side (threshold, knockout, mask, steer, NASA, random heads).

Every fix is fitted on the train splits of ``--train`` (heads and settings chosen there only), applied, and
evaluated on every ``--test`` set (a training dataset's test split; any other dataset whole). Writes
``OUT/comparison.csv`` (one row per method and test set, metrics with ``_lo``/``_hi`` 95% bootstrap
intervals, params, fit seconds, LM loss on neutral text), ``OUT/methods/NAME`` (each fitted fix; apply one
with ``nasa-lens eval --method OUT/methods/NAME``), ``OUT/comparison.html``/``.png`` and ``OUT/report.md``.
"""
from __future__ import annotations

import argparse
import shlex
import sys

from nasa_lens.commands.common import add_out_arg
from nasa_lens.commands.flags import add_config_flags, config_from_args
from nasa_lens.commands.logs import progress_on
from nasa_lens.commands.tables import add_json_flag, print_table, say
from nasa_lens.jobs.compare import CompareConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="de-biasing fixes side by side: fit on training splits, evaluate on test sets",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    add_config_flags(p, CompareConfig)
    add_out_arg(p, "output folder")
    add_json_flag(p)
    p.set_defaults(func=_compare)


def _compare(args: argparse.Namespace) -> int:
    from nasa_lens.jobs.compare import run_compare

    cfg = config_from_args(CompareConfig, args)
    command = "nasa-lens " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if "compare" in sys.argv[1:] else ""
    result = run_compare(cfg, args.out, command=command, progress=progress_on(args))
    cols = ["method", "dataset", "n", "accuracy", "pr_gap", "yes_rate", "auroc", "params", "fit_seconds"]
    print_table(args, result.frame, cols)
    say(args, f"wrote {args.out}/comparison.csv, report.md, comparison.html and methods/")
    return 0
