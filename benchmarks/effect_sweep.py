"""Benchmark: per-head ablation effects, exact vs attribution patching, on the same examples in one run.

* exact: every head ablated alone, one forward per head and batch (started at the head's layer from the
  cached clean residual, logits at the last position only): ``n_layers * n_heads`` forwards per batch;
* attribution: one forward with gradients w.r.t. every ``hook_z`` and one backward per batch:
  ``effect ~ (z_ablated - z_clean) . d(logit_yes - logit_no) / dz``.

Printed: the wall time of each, the time ratio exact / attribution, the Spearman (and Pearson) correlation of
the per-head effects, the overlap of their top-10 heads, and the heads each ranks first. Both run in this one
process, one after the other, on the same examples (the machine may be shared: rerun to see the spread).

Run: ``python benchmarks/effect_sweep.py [--n 8] [--data strategyqa] [--mode zero] [--model smollm2-135m-instruct]``
(about ``n_layers * n_heads / 2`` forwards of the batch for the exact sweep: minutes on 2 CPU cores at n=8).
Goal: attribution at least 20x faster than exact with Spearman >= 0.5 (the approximation is good enough to
pick heads for an exact check).
"""
from __future__ import annotations

import argparse
import json
import sys

GOALS = {"time ratio exact/attribution >=": 20.0, "spearman >=": 0.5}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--data", default="strategyqa")
    ap.add_argument("--n", type=int, default=8, help="examples (label-balanced)")
    ap.add_argument("--mode", choices=["zero", "mean", "resample"], default="zero")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="also save both sweeps here")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from nasa_lens import causal
    from nasa_lens.datasets import load_dataset
    from nasa_lens.models import load_model

    model = load_model(args.model)
    data = list(load_dataset(args.data, limit=args.n))
    reference = None
    if args.mode != "zero":
        from nasa_lens.interventions import collect_z_reference

        reference = collect_z_reference(model, data, batch_size=args.batch_size, progress=False)
    cfg = dict(mode=args.mode, batch_size=args.batch_size)
    attr = causal.effect_sweep(model, data, causal.EffectSweepConfig(method="attribution", positions="all", **cfg), reference=reference)
    exact = causal.effect_sweep(model, data, causal.EffectSweepConfig(method="exact", positions="all", **cfg), reference=reference)
    stats = causal.sweep_correlation(exact, attr, top_k=10)
    if args.out:
        exact.save(args.out)
        attr.save(args.out)
    print(f"{args.model}, {args.data}, n={len(data)}, {model.n_layers * model.n_heads} heads, {args.mode} ablation")
    print(f"  exact sweep        {exact.seconds:9.1f} s")
    print(f"  attribution sweep  {attr.seconds:9.1f} s")
    print(f"  time ratio exact / attribution: {stats['time_ratio']:.1f}x")
    print(f"  Spearman {stats['spearman']:+.3f} (p={stats['spearman_p']:.2g}), Pearson {stats['pearson']:+.3f}, "
          f"top-10 overlap {stats['top10_overlap']:.0%}")
    print(f"  top heads exact:       {', '.join(f'{layer}.{h}' for layer, h in exact.top_heads(5))}")
    print(f"  top heads attribution: {', '.join(f'{layer}.{h}' for layer, h in attr.top_heads(5))}")
    ok = stats["time_ratio"] >= GOALS["time ratio exact/attribution >="] and stats["spearman"] >= GOALS["spearman >="]
    print(f"  goals {json.dumps(GOALS)}: {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
