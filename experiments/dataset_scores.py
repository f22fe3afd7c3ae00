"""Experiment behind docs/debias.md's dataset table: SmolLM2's AUROC and yes-rate on every built-in dataset.

Every generator at every difficulty level (1..5; the full generated set of the default n=400, so the sample
is the same whatever split a later run trains on) and the *test* split of every registry dataset, 200
label-balanced examples each (seed 0), default Yes/No prompt format. Rows are appended to ``OUT`` as they
finish (a rerun skips rows already there).

Run: ``nice -n 10 python experiments/dataset_scores.py [--limit 200] [--out results/dataset_scores.csv]``
(about 20 minutes for SmolLM2 on 2 shared CPU cores).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("experiments.dataset_scores")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--levels", default="1,2,3,4,5")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="results/dataset_scores.csv")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    from nasa_lens.datasets import load_dataset
    from nasa_lens.datasets.generators import GENERATORS
    from nasa_lens.datasets.sources import REGISTRY
    from nasa_lens.evaluate import evaluate
    from nasa_lens.models import load_model

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        prev = pd.read_csv(out)
        done = {(r.dataset, int(r.difficulty)) for r in prev.itertuples()}
    levels = [int(x) for x in args.levels.split(",")]
    # most informative first: the easiest level of every generator (the new ``category`` first), the registry
    # test splits, every level of ``category``, then the harder levels of the others
    first = ["category"] + [g for g in GENERATORS if g != "category"]
    jobs = [(name, levels[0]) for name in first] + [(name, 0) for name in REGISTRY]
    jobs += [("category", d) for d in levels[1:]]
    jobs += [(name, d) for d in levels[1:] for name in GENERATORS if name != "category"]
    model = load_model(args.model)
    for name, difficulty in jobs:
        if (name, difficulty) in done:
            continue
        if difficulty:
            data = load_dataset(name, limit=args.limit, seed=0, difficulty=difficulty)
        else:
            data = load_dataset(name, limit=args.limit, seed=0, split="test")
        res = evaluate(model, data, progress=False, n_boot=200)
        m = res.metrics
        row = {"dataset": name, "difficulty": difficulty, "split": "test" if not difficulty else "all", "n": res.n,
               "auroc": m["auroc"], "auroc_lo": res.ci["auroc"][0], "auroc_hi": res.ci["auroc"][1],
               "yes_rate": m["yes_rate"], "accuracy": m["accuracy"], "pr_gap": m["pr_gap"],
               "mean_p_yes": float(res.p_yes.mean())}
        log.info("%s", row)
        pd.DataFrame([row]).to_csv(out, mode="a", header=not out.exists(), index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
