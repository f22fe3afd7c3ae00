"""``nasa-lens models``, ``nasa-lens data list|pull``, ``nasa-lens eval``."""
from __future__ import annotations

import argparse
from pathlib import Path

from nasa_lens.commands.common import add_data_args, add_model_args, add_out_arg, data_spec, model_spec
from nasa_lens.commands.flags import add_config_flags, config_from_args
from nasa_lens.jobs.evaluate import EvalConfig
from nasa_lens.vocab import METRICS_FILE, PREDICTIONS_FILE


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the built-in model names")
    p.set_defaults(func=_models)

    p = sub.add_parser("data", help="list or fetch datasets")
    dsub = p.add_subparsers(dest="data_command", required=True)
    q = dsub.add_parser("list", help="built-in generators and registry datasets")
    q.set_defaults(func=_data_list)
    q = dsub.add_parser("pull", help="fetch registry datasets into the cache")
    q.add_argument("names", nargs="+")
    q.add_argument("--force", action="store_true")
    q.set_defaults(func=_data_pull)

    p = sub.add_parser("eval", help="bias metrics of a model on a yes/no dataset")
    add_model_args(p)
    add_data_args(p)
    add_config_flags(p, EvalConfig)
    add_out_arg(p, "folder for metrics.json and predictions.csv")
    p.set_defaults(func=_eval)


def _models(args) -> int:
    import pandas as pd

    from nasa_lens.models import list_models

    print(pd.DataFrame(list_models()).to_string(index=False))
    return 0


def _data_list(args) -> int:
    import pandas as pd

    from nasa_lens.datasets import list_datasets

    print(pd.DataFrame(list_datasets()).to_string(index=False))
    return 0


def _data_pull(args) -> int:
    from nasa_lens.datasets import pull_dataset

    for name in args.names:
        print(f"{name}: {pull_dataset(name, force=args.force)}")
    return 0


def _eval(args) -> int:
    from nasa_lens.jobs.evaluate import run_eval

    cfg = config_from_args(EvalConfig, args)
    out = Path(args.out)
    result = run_eval(cfg, out, model=model_spec(args), data=data_spec(args))
    print(result.summary())
    print(result.metrics_frame().to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(f"wrote {out / METRICS_FILE} and {out / PREDICTIONS_FILE}")
    return 0
