"""Head-level nulls: where does the top-k NAS head set fall among random head sets of the same size?

For each k, the top-k heads by mean NAS (ranked on StrategyQA *train* questions) and ``--sets`` seeded random
sets of k heads are ablated on the StrategyQA *test* questions with the suffix runner
(:func:`nasa_lens.causal.head_set_effects`), each set exactly and on its own. Per set: the mean effect on
``logit(Yes) - logit(No)`` and the change in yes-rate. The head-level p-value of the NAS set is
``(1 + #random sets with an effect at least as large) / (1 + #random sets)``: the question is whether NAS picks
heads that matter more than heads picked at random, not whether one set's effect differs from zero per question.

    python experiments/headset_nulls.py --n 64 --rank-n 100 --sets 100 --out figures/data/nulls_smollm2_strategyqa

Writes ``null.csv`` (``k,set,heads,mode,positions,mean_effect,yes_rate_delta,n``; ``set`` is ``nas`` for the
NAS set, else the random set's number), ``null_summary.csv`` (per k: the NAS set's values, the random sets'
mean and 95% range, percentile and p) and ``null.json`` (sizes, seeds, seconds).
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--data", default="strategyqa")
    ap.add_argument("--n", type=int, default=64, help="test questions the sets are ablated on")
    ap.add_argument("--rank-n", type=int, default=100, help="train questions the NAS ranking is computed on")
    ap.add_argument("--sets", type=int, default=100, help="random head sets per k")
    ap.add_argument("--k", default="1,2,4,8,16")
    ap.add_argument("--mode", default="zero")
    ap.add_argument("--positions", default="after")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="results/nulls")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import numpy as np
    import pandas as pd

    from nasa_lens.causal import head_set_effects
    from nasa_lens.datasets import load_dataset
    from nasa_lens.heads import format_head
    from nasa_lens.io import atomic_output
    from nasa_lens.models import load_model
    from nasa_lens.nas import scan_nas

    t0 = time.perf_counter()
    model = load_model(args.model)
    train = load_dataset(args.data, split="train", limit=args.rank_n, seed=args.seed)
    test = load_dataset(args.data, split="test", limit=args.n, seed=args.seed)
    ranking = scan_nas(model, train, progress=False).ranking_frame()
    ranked = [(int(r.layer), int(r.head)) for r in ranking.itertuples()]
    every = [(layer, head) for layer in range(model.n_layers) for head in range(model.n_heads)]
    ks = [int(k) for k in args.k.split(",")]
    sets, labels = [], []
    for k in ks:
        sets.append(ranked[:k])
        labels.append((k, "nas"))
        rng = random.Random(f"null|{args.seed}|{k}")
        for i in range(args.sets):
            sets.append(sorted(rng.sample(every, k)))
            labels.append((k, str(i)))
    result = head_set_effects(model, test, sets, mode=args.mode, positions=args.positions, progress=True)
    clean_yes = float(np.mean(result.clean_logit_diff > 0))
    rows = []
    for (k, name), heads, eff in zip(labels, result.head_sets, result.effects):
        rows.append({"k": k, "set": name, "heads": ",".join(format_head(h) for h in heads), "mode": args.mode,
                     "positions": args.positions, "mean_effect": float(eff.mean()),
                     "yes_rate_delta": float(np.mean(result.clean_logit_diff + eff > 0)) - clean_yes, "n": len(eff)})
    null = pd.DataFrame(rows)
    summary = []
    for k in ks:
        g = null[null.k == k]
        nas, rand = g[g.set == "nas"].iloc[0], g[g.set != "nas"]
        row = {"k": k, "heads": nas.heads, "n_random": len(rand)}
        for metric in ("mean_effect", "yes_rate_delta"):
            r = rand[metric].to_numpy()
            row |= {f"nas_{metric}": nas[metric], f"random_{metric}_mean": float(r.mean()),
                    f"random_{metric}_lo": float(np.quantile(r, 0.025)), f"random_{metric}_hi": float(np.quantile(r, 0.975)),
                    f"percentile_{metric}": float(np.mean(r < nas[metric]) * 100),
                    f"p_{metric}": float((1 + np.sum(r >= nas[metric])) / (1 + len(r)))}
        summary.append(row)
    meta = {"model": args.model, "dataset": args.data, "n_test": len(test), "n_rank_train": len(train),
            "sets_per_k": args.sets, "k": ks, "mode": args.mode, "positions": args.positions, "seed": args.seed,
            "clean_yes_rate": clean_yes, "seconds": time.perf_counter() - t0,
            "command": "python experiments/headset_nulls.py " + " ".join(argv or __import__("sys").argv[1:])}
    out = Path(args.out)
    with atomic_output(out) as tmp:
        null.to_csv(tmp / "null.csv", index=False, float_format="%.6g")
        pd.DataFrame(summary).to_csv(tmp / "null_summary.csv", index=False, float_format="%.6g")
        (tmp / "null.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(pd.DataFrame(summary)[["k", "heads", "nas_yes_rate_delta", "random_yes_rate_delta_mean",
                                 "p_yes_rate_delta", "nas_mean_effect", "p_mean_effect"]].to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
