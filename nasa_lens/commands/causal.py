"""``nasa-lens ablate`` (metrics before / after ablating a head set) and ``nasa-lens patch`` (per-head
activation patching on counterfactual pairs). Thin: each handler builds a config from its flags and calls one
function of :mod:`nasa_lens.causal`."""
from __future__ import annotations

import argparse
from pathlib import Path

from nasa_lens.commands.common import (
    add_adapter_arg,
    add_data_args,
    add_model_args,
    apply_adapter_from_args,
    load_data_from_args,
    load_model_from_args,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ablate", help="metrics before and after ablating a set of heads")
    add_model_args(p)
    add_data_args(p)
    p.add_argument("--heads", required=True, help="top:K, bottom:K (by NAS), random:K[:SEED] or L.H,L.H")
    p.add_argument("--mode", choices=["zero", "mean", "resample"], default="zero",
                   help="what the head output is replaced by (mean/resample: over the same data)")
    p.add_argument("--nas", default=None,
                   help="a scan folder (or its nas.csv) whose ranking top:K / bottom:K use; default: scan the data first")
    add_adapter_arg(p)
    p.add_argument("--out", required=True, help="folder for metrics.json and predictions.csv")
    p.set_defaults(func=_ablate)

    p = sub.add_parser("patch", help="per-head activation patching on counterfactual pairs")
    add_model_args(p)
    add_data_args(p)
    p.add_argument("--pairs", choices=["swap", "label"], default="swap",
                   help="swap: the same question with the candidates in the other order; label: two questions "
                        "of one generator with the same token length and opposite gold labels")
    p.add_argument("--what", choices=["z", "pattern"], default="z", help="patch the head output (z) or its attention pattern")
    p.add_argument("--max-pairs", type=int, default=None, help="use at most N pairs")
    add_adapter_arg(p)
    p.add_argument("--no-png", action="store_true", help="write the heatmap as HTML only")
    p.add_argument("--out", required=True, help="folder for patching.csv and patching_heatmap.html/.png")
    p.set_defaults(func=_patch)


def _needs_ranking(spec: str) -> bool:
    return spec.split(":")[0].strip() in ("top", "bottom")


def _ablate(args) -> int:
    from nasa_lens import causal

    cfg = causal.AblationConfig(heads=args.heads, mode=args.mode, format=args.format, batch_size=args.batch_size, seed=args.seed)
    model = load_model_from_args(args)
    apply_adapter_from_args(model, args)
    data = load_data_from_args(args)
    ranking = None
    if _needs_ranking(args.heads):
        if args.nas:
            ranking = causal.ranking_from_csv(args.nas)
        else:
            from nasa_lens.nas import scan_nas
            from nasa_lens.prompts import PromptFormat

            ranking = scan_nas(model, data, PromptFormat.named(args.format), batch_size=args.batch_size).mean
    result = causal.ablate(model, data, cfg, ranking=ranking)
    out = result.save(Path(args.out))
    heads = ",".join(f"{layer}.{h}" for layer, h in result.heads)
    print(f"ablated {len(result.heads)} heads ({result.mode}): {heads}")
    print(result.to_dataframe().to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(f"wrote {out / 'metrics.json'} and {out / 'predictions.csv'}")
    return 0


def _patch(args) -> int:
    from nasa_lens import causal
    from nasa_lens.plots import save_figure
    from nasa_lens.plots_causal import patching_heatmap

    cfg = causal.PatchingConfig(pairs=args.pairs, what=args.what, max_pairs=args.max_pairs, format=args.format,
                                batch_size=args.batch_size, seed=args.seed)
    model = load_model_from_args(args)
    apply_adapter_from_args(model, args)
    data = load_data_from_args(args)
    result = causal.patch_heads(model, data, cfg)
    out = result.save(Path(args.out))
    written = save_figure(patching_heatmap(result), out / "patching_heatmap", png=not args.no_png)
    print(result.summary())
    print(f"wrote {out / 'patching.csv'} and " + ", ".join(str(p) for p in written))
    return 0
