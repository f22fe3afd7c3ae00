"""``nasa-lens scan``: NAS of every attention head on a yes/no dataset.

Writes ``OUT/nas.csv`` (``layer,head,nas_mean,nas_stderr,n,rank``; rank 1 = most negative-biased),
``OUT/nas_scores.npz`` + ``OUT/nas_scores.json`` (per-example scores) and ``OUT/nas_heatmap.html`` (+ ``.png``),
then prints the top heads.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from nasa_lens.commands.common import add_adapter_arg, add_data_args, add_model_args, apply_adapter_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "scan",
        help="negative attention score (NAS) of every head on a dataset",
        description="Score every attention head by how much more it attends to the 'No' candidate of the "
        "instruction than to 'Yes' (NAS, Yu et al. 2025); write nas.csv, per-example scores and a heatmap.",
    )
    add_model_args(p)
    add_data_args(p)
    p.add_argument("--positions", choices=["after", "last"], default="after",
                   help="query positions summed: after the instruction's later candidate (default), or the last token only")
    add_adapter_arg(p)
    p.add_argument("--top", type=int, default=10, help="how many top heads to print (default 10)")
    p.add_argument("--no-png", action="store_true", help="write the heatmap as HTML only")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=_scan)


def _scan(args: argparse.Namespace) -> int:
    from nasa_lens.commands.common import load_data_from_args, load_model_from_args
    from nasa_lens.heads import format_head
    from nasa_lens.nas import HEATMAP_FILE, RANKING_FILE, ScanConfig, run_scan

    cfg = ScanConfig(
        data=args.data,
        model=args.model,
        limit=args.limit,
        seed=args.seed,
        split=args.split,
        positions=args.positions,
        format=args.format,
        batch_size=args.batch_size,
        adapter=args.adapter,
        device=args.device,
        device_map=args.device_map,
        top_k=args.top,
        png=not args.no_png,
    )  # validates every value before anything is loaded
    model = load_model_from_args(args)
    apply_adapter_from_args(model, args)
    data = load_data_from_args(args)
    out = Path(args.out)
    result = run_scan(cfg, out, model=model, dataset=data)
    table = result.ranking_frame().head(min(cfg.top_k, result.n_layers * result.n_heads))
    table.insert(0, "head_id", [format_head((int(r.layer), int(r.head))) for r in table.itertuples()])
    print(f"NAS of {result.model} on {result.dataset} ({result.format}, positions={result.positions}, n={result.n})")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    written = sorted(p.name for p in out.iterdir() if p.name.startswith(("nas", HEATMAP_FILE)) and not p.name.startswith("."))
    print(f"wrote {', '.join(written)} in {out} ({RANKING_FILE}: rank 1 = most negative-biased)")
    return 0
