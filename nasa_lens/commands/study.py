"""``nasa-lens study``: the whole pipeline, cached and resumable (see :mod:`nasa_lens.study`)."""
from __future__ import annotations

import argparse

from nasa_lens.commands.logs import progress_on
from nasa_lens.commands.tables import add_json_flag, print_table, say
from nasa_lens.vocab import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "study",
        help="the main job: bias report, NAS scan, checks, ablation, NASA fine-tune, after-report",
        description="Run (or resume) the whole study: bias report -> NAS scan -> instruction-agnostic checks -> "
        "ablation against controls -> NASA fine-tune -> after-report and generalisation. Every stage is cached "
        "under OUT/stages (keyed by the config it reads): rerun the same command to resume after an interruption.",
    )
    p.add_argument("--config", default=None, help="a TOML config (default: the built-in defaults, see configs/default.toml)")
    p.add_argument("--quick", action="store_true", help="tiny sizes (finishes in a few minutes); applied after --config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set nas.limit=16 --set 'models=[\"smollm2-135m-instruct\",\"gemma3-270m\"]'")
    p.add_argument("--model", dest="models", action="append", default=None,
                   help="a model to study (repeat for several; replaces the config's models)")
    p.add_argument("--out", default=None, help="output folder (report.md, results.json, CSVs, stages/); required to run")
    p.add_argument("--figures", default=None,
                   help="folder for the figures (HTML and PNG); default: OUT/figures (`make figures` writes the "
                        "committed ones into figures/)")
    p.add_argument("--no-png", action="store_true", help="write figures as HTML only")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as TOML and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (as nasa-lens -q)")
    add_json_flag(p)
    p.set_defaults(func=_study)


def _study(args: argparse.Namespace) -> int:
    import logging

    from nasa_lens.config import load_config, parse_override
    from nasa_lens.study import run_study

    check_one_process()
    overrides: dict = {}
    for text in args.overrides:
        overrides = _merge(overrides, parse_override(text))
    if args.models:
        overrides["models"] = list(args.models)
    if args.no_png:
        overrides = _merge(overrides, {"report": {"png": False}})
    cfg = load_config(args.config, quick=args.quick, overrides=overrides or None)
    if args.print_config:
        print(cfg.to_toml(), end="")
        return 0
    if not args.out:
        raise InputError("--out is required: the folder for report.md, results.json, the CSVs and the stage cache")
    if logging.getLogger().level > logging.INFO and progress_on(args):
        logging.getLogger("nasa_lens.study").setLevel(logging.INFO)
        if not logging.getLogger().handlers:
            logging.basicConfig(format="%(message)s")
    result = run_study(cfg, args.out, figures_dir=args.figures, progress=progress_on(args))
    say(args, result.summary())
    print_table(args, result.timings_frame(), floatfmt=".1f")
    return 0


def check_one_process() -> None:
    """``study`` runs as one process: under torchrun with several ranks it is refused before anything is
    written (its folder, lock and stage cache belong to one run)."""
    import os

    from nasa_lens import parallel

    if parallel.launched_by_torchrun() and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise InputError(
            "study runs as one process, not under torchrun (one run owns the study folder, its lock and its stage "
            "cache); run nasa-lens study without torchrun (eval, scan, ablate, patch, dla, paths and finetune "
            "run data-parallel)"
        )


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
