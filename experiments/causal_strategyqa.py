"""Experiment behind the README's causal numbers: the top-k NAS ablation curve on 200 StrategyQA questions.

1. rank the heads by mean NAS (positions after the candidates) on a label-balanced sample of the StrategyQA
   *train* split, so the heads are chosen on questions the curve never sees;
2. ablate the top-k heads (k = 1, 2, 4, 8, 16) on a label-balanced sample of the *test* split, beside k random
   heads (several seeds, top-k excluded) and the k lowest-NAS heads, with paired bootstrap intervals and a
   permutation p-value of top-k against the random control (`nasa_lens.causal.ablation_curve`).

Writes ``OUT/ranking/`` (the scan), ``OUT/curve_<mode>/`` (curve.csv, ablation.csv, per-example outputs) and
``FIGURES/ablation_curve_strategyqa<n>_<mode>.{html,png}``, and prints the summary tables.

With ``--sweep DIR`` (default ``results/effect_sweep``, written by ``benchmarks/effect_sweep.py --out``) it also
draws the exact-vs-attribution scatter, the exact effect heatmap and NAS (this ranking) vs effect.

Run: ``python experiments/causal_strategyqa.py [--n 200] [--modes zero mean] [--seeds 3]``
(about 15 minutes per mode for SmolLM2 on 2 idle CPU cores at n=200).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("experiments.causal_strategyqa")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--data", default="strategyqa")
    ap.add_argument("--n", type=int, default=200, help="test questions ablated (label-balanced)")
    ap.add_argument("--n-rank", type=int, default=200, help="train questions that rank the heads")
    ap.add_argument("--modes", nargs="+", default=["zero", "mean"], choices=["zero", "mean", "resample"])
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--seeds", type=int, default=3, help="random head sets per k")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="results/causal_strategyqa")
    ap.add_argument("--figures", default="figures")
    ap.add_argument("--sweep", default="results/effect_sweep",
                    help="a folder saved by `benchmarks/effect_sweep.py --out`: also draw exact vs attribution and NAS vs effect")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    from nasa_lens import causal
    from nasa_lens.datasets import load_dataset
    from nasa_lens.models import load_model
    from nasa_lens.nas import NASResult, scan_nas
    from nasa_lens.plots import save_figure
    from nasa_lens.plots.causal import ablation_curve_figure

    out = Path(args.out)
    model = load_model(args.model)
    rank_dir = out / "ranking"
    if (rank_dir / "nas_scores.json").is_file():
        scan = NASResult.load(rank_dir)
        log.info("ranking reused from %s", rank_dir)
    else:
        scan = scan_nas(model, load_dataset(args.data, split="train", limit=args.n_rank, seed=0))
        scan.save(rank_dir)
    ranking = scan.mean
    print(f"== head ranking: {len(scan.ids)} {args.data} train questions\n{scan.summary(k=16)}")
    test = load_dataset(args.data, split="test", limit=args.n, seed=0)
    pd.set_option("display.width", 200)
    for mode in args.modes:
        folder = out / f"curve_{mode}"
        if (folder / "curve.json").is_file():
            result = causal.AblationCurveResult.load(folder)
            log.info("curve (%s) reused from %s", mode, folder)
        else:
            result = causal.ablation_curve(model, test, ranking, ks=tuple(args.ks), mode=mode, n_random_seeds=args.seeds)
            result.save(folder)
        save_figure(ablation_curve_figure(result, ("yes_rate", "recall", "pr_gap", "mean_logit_diff")),
                    Path(args.figures) / f"ablation_curve_{args.data}{len(result.ids)}_{mode}", include_plotlyjs="directory")
        print(f"\n== {mode} ablation, {args.model}, {len(result.ids)} {args.data} test questions, {result.seconds:.0f} s")
        for metric in ("yes_rate", "recall", "pr_gap", "accuracy", "mean_logit_diff"):
            print(f"-- {metric}")
            print(result.summary_table(metric).to_string(index=False, float_format=lambda v: f"{v:+.3f}"))
    sweep_dir = Path(args.sweep)
    if (sweep_dir / "effects_exact.json").is_file() and (sweep_dir / "effects_attribution.json").is_file():
        from nasa_lens.plots.causal import effect_heatmap, nas_effect_scatter, sweep_scatter

        exact = causal.EffectSweepResult.load(sweep_dir, "effects_exact")
        attr = causal.EffectSweepResult.load(sweep_dir, "effects_attribution")
        stats = causal.sweep_correlation(exact, attr)
        nas_stats = causal.rank_correlation(ranking.ravel(), exact.effects.ravel())
        fig_dir = Path(args.figures)
        save_figure(sweep_scatter(exact, attr, stats), fig_dir / f"effect_sweep_exact_vs_attribution_n{exact.n}", include_plotlyjs="directory")
        save_figure(effect_heatmap(exact), fig_dir / f"effect_sweep_exact_n{exact.n}", include_plotlyjs="directory")
        save_figure(nas_effect_scatter(causal.nas_effect_table(ranking, exact), nas_stats),
                    fig_dir / f"nas_vs_effect_n{exact.n}", include_plotlyjs="directory")
        print(f"\n== effect sweep ({sweep_dir}, n={exact.n}): exact vs attribution Spearman {stats['spearman']:+.3f}; "
              f"NAS vs exact effect Spearman {nas_stats['spearman']:+.3f} (p={nas_stats['spearman_p']:.2g})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
