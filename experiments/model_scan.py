"""Issue #20 items 4 and 6: one NAS scan that also gives the bias metrics, for one model, dataset and prompt format.

The scan's forward passes give every head's NAS on every question and the answer's ``p_yes`` (the same numbers
``nasa-lens eval`` reports: ``logit_diff = log(p_yes / (1 - p_yes))`` of the two answer logits), so one pass
gives both the NAS ranking and the bias metrics. Each model uses its own prompt (chat template for SmolLM2,
plain ``Answer:`` text for the base Gemma 3 270M; ``nasa_lens.prompts``).

``--data lookup:dN`` is the lookup generator at difficulty N, 590 generated questions, ``test_fraction`` 0.4
(as ``experiments/debias_lookup.py``), so its test split holds >= 200 label-balanced questions.

Writes ``OUT/nas.csv`` (``layer,head,nas_mean,nas_stderr,n,rank``), ``OUT/predictions.csv``
(``id,label,p_yes,pred,logit_diff``), ``OUT/nas_by_example.csv.gz`` (``id,layer,head,nas``) and ``OUT/run.json``.

Run: ``python experiments/model_scan.py --model smollm2-135m-instruct --data strategyqa --limit 200 --out DIR``
"""
from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--data", default="strategyqa")
    ap.add_argument("--split", choices=["train", "test"], default=None)
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--format", default="yes-no")
    ap.add_argument("--positions", default="after", choices=["after", "last"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import numpy as np
    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    from nasa_lens.datasets import load_dataset
    from nasa_lens.io import atomic_path, write_json
    from nasa_lens.models import load_model
    from nasa_lens.nas import scan_nas
    from nasa_lens.prompts import PromptFormat

    t0 = time.time()
    name, opts = args.data, {}
    if name.startswith("lookup:d"):
        name, opts = "lookup", dict(difficulty=int(args.data.split(":d")[1]), n=590, test_fraction=0.4)
    data = load_dataset(name, split=args.split, limit=args.limit, seed=0, **opts)
    model = load_model(args.model)
    res = scan_nas(model, data, PromptFormat.named(args.format), positions=args.positions, progress=False)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "nas.csv") as tmp:
        res.ranking_frame().to_csv(tmp, index=False, float_format="%.6g")
    p = np.clip(np.asarray(res.p_yes, float), 1e-12, 1 - 1e-12)
    labels = np.asarray(res.labels, int)
    pred = (p > 0.5).astype(int)
    yn = np.array(["no", "yes"])
    preds = pd.DataFrame({"id": res.ids, "label": yn[labels], "p_yes": p, "pred": yn[pred], "logit_diff": np.log(p / (1 - p))})
    with atomic_path(out / "predictions.csv") as tmp:
        preds.to_csv(tmp, index=False, float_format="%.8g")
    long = res.to_dataframe()[["id", "layer", "head", "nas"]]
    with atomic_path(out / "nas_by_example.csv.gz") as tmp:
        long.to_csv(tmp, index=False, float_format="%.5g", compression={"method": "gzip", "mtime": 0})
    write_json(out / "run.json", {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "model": model.name,
                                  "data": args.data, "split": args.split, "n": len(data), "format": args.format,
                                  "positions": args.positions, "seconds": round(time.time() - t0, 1)})
    print(res.ranking_frame().head(10).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
