"""``nasa-lens scan``: NAS of every attention head on a yes/no dataset.

Writes ``OUT/nas.csv`` (``layer,head,nas_mean,nas_stderr,n,rank``; rank 1 = most negative-biased),
``OUT/nas_scores.npz`` + ``OUT/nas_scores.json`` (per-example scores) and ``OUT/nas_heatmap.html`` (+ ``.png``),
then prints the top heads.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from nasa_lens.commands.common import add_data_args, add_model_args, add_out_arg, data_spec, model_spec
from nasa_lens.commands.flags import add_config_flags, config_from_args
from nasa_lens.commands.logs import progress_on
from nasa_lens.commands.tables import add_json_flag, print_table, say
from nasa_lens.jobs.scan import ScanConfig
from nasa_lens.vocab import NAS_HEATMAP_FILE, NAS_RANKING_FILE


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "scan",
        help="negative attention score (NAS) of every head on a dataset",
        description="Score every attention head by how much more it attends to the 'No' candidate of the "
        "instruction than to 'Yes' (NAS, Yu et al. 2025); write nas.csv, per-example scores and a heatmap.",
    )
    add_model_args(p)
    add_data_args(p)
    add_config_flags(p, ScanConfig, rename={"top_k": "top"})
    add_out_arg(p, "output folder")
    add_json_flag(p)
    p.set_defaults(func=_scan)


def _scan(args: argparse.Namespace) -> int:
    from nasa_lens.heads import format_head
    from nasa_lens.jobs.scan import run_scan

    cfg = config_from_args(ScanConfig, args)  # validated (with the model and data specs) before loading
    model, data = model_spec(args), data_spec(args)
    out = Path(args.out)
    result = run_scan(cfg, out, model=model, data=data, progress=progress_on(args))
    table = result.ranking_frame().head(min(cfg.top_k, result.n_layers * result.n_heads))
    table.insert(0, "head_id", [format_head((int(r.layer), int(r.head))) for r in table.itertuples()])
    say(args, f"NAS of {result.model} on {result.dataset} ({result.format}, positions={result.positions}, n={result.n})")
    print_table(args, table, floatfmt=".4f")
    written = sorted(p.name for p in out.iterdir() if p.name.startswith(("nas", NAS_HEATMAP_FILE)) and not p.name.startswith("."))
    say(args, f"wrote {', '.join(written)} in {out} ({NAS_RANKING_FILE}: rank 1 = most negative-biased)")
    return 0
