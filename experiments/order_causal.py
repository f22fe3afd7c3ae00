"""Issue #20 item 4, the causal half: zero-ablate the heads that lean to "No" in both prompt orders, in both orders.

Reads the order table of ``experiments/evidence_tables.py`` (``figures/data/nas_order_<model>_<data>.csv``), takes
the heads of kind ``no-both`` (NAS > 0.5 and z > 3 with "Yes or No" and with "No or Yes"), the same number of
top heads of kind ``second`` (they follow the second-named candidate), and ``--n-random`` seeded random sets
of as many heads (none of the ``no-both`` heads), and zero-ablates each set (``HeadAblation("zero")``, every
position) on the same label-balanced StrategyQA test questions with either prompt order.

Writes ``OUT/effects.csv`` (``format,set,heads,n,yes_rate,accuracy,logit_diff,d_yes_rate,d_logit_diff`` and a
paired 95% bootstrap interval over questions for both deltas, 1000 resamples, seed 0), ``OUT/by_example.csv.gz``
(``format,set,id,label,p_yes,logit_diff``) and ``OUT/run.json``.

Run: ``python experiments/order_causal.py --limit 100 --out figures/data/order_causal_smollm2``
"""
from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--order-table", default="figures/data/nas_order_smollm2-135m-instruct_strategyqa-test200.csv")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--n-random", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    import numpy as np
    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    from nasa_lens.datasets import load_dataset
    from nasa_lens.evaluate import evaluate
    from nasa_lens.heads import format_heads
    from nasa_lens.interventions import HeadAblation
    from nasa_lens.models import load_model
    from nasa_lens.prompts import PromptFormat

    t0 = time.time()
    table = pd.read_csv(args.order_table)
    no_both = [(int(r.layer), int(r.head)) for r in table[table.kind == "no-both"].sort_values("no_both_rank").itertuples()]
    k = len(no_both)
    second = [(int(r.layer), int(r.head)) for r in table[table.kind == "second"].sort_values("rank_yes_no").head(k).itertuples()]
    all_heads = [(int(r.layer), int(r.head)) for r in table.itertuples()]
    sets = {"none": [], "no-both": no_both, "second": second}
    for i in range(args.n_random):
        pool = [h for h in all_heads if h not in no_both]
        sets[f"random{i}"] = sorted(random.Random(i).sample(pool, k))
    data = load_dataset("strategyqa", split="test", limit=args.limit, seed=0)
    model = load_model(args.model)
    rows, per = [], []
    for fmt_name in ("yes-no", "no-yes"):
        fmt = PromptFormat.named(fmt_name)
        for name, heads in sets.items():
            hooks = HeadAblation(tuple(heads), mode="zero").hooks() if heads else ()
            res = evaluate(model, data, fmt, n_boot=0, progress=False, hooks=hooks)
            per.append(pd.DataFrame({"format": fmt_name, "set": name, "id": res.ids, "label": res.labels,
                                     "p_yes": res.p_yes, "logit_diff": res.logit_diff}))
            print(fmt_name, name, format_heads(heads), res.metrics["yes_rate"], flush=True)
    by = pd.concat(per, ignore_index=True)
    rng = np.random.default_rng(0)
    for fmt_name in ("yes-no", "no-yes"):
        clean = by[(by.format == fmt_name) & (by.set == "none")].reset_index(drop=True)
        n = len(clean)
        idx = rng.integers(0, n, (1000, n))
        for name, heads in sets.items():
            cur = by[(by.format == fmt_name) & (by.set == name)].reset_index(drop=True)
            yes_c, yes = (clean.p_yes > 0.5).to_numpy(float), (cur.p_yes > 0.5).to_numpy(float)
            dy, dl = yes - yes_c, (cur.logit_diff - clean.logit_diff).to_numpy(float)
            acc = float(((cur.p_yes > 0.5).astype(int) == cur.label).mean())
            bdy, bdl = dy[idx].mean(1), dl[idx].mean(1)
            rows.append({"format": fmt_name, "set": name, "heads": format_heads(heads), "n": n, "yes_rate": float(yes.mean()),
                         "accuracy": acc, "logit_diff": float(cur.logit_diff.mean()),
                         "d_yes_rate": float(dy.mean()), "d_yes_rate_lo": float(np.quantile(bdy, 0.025)),
                         "d_yes_rate_hi": float(np.quantile(bdy, 0.975)), "d_logit_diff": float(dl.mean()),
                         "d_logit_diff_lo": float(np.quantile(bdl, 0.025)), "d_logit_diff_hi": float(np.quantile(bdl, 0.975))})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / "effects.csv", index=False, float_format="%.6g")
    by.to_csv(out / "by_example.csv.gz", index=False, float_format="%.6g", compression={"method": "gzip", "mtime": 0})
    (out / "run.json").write_text(json.dumps({"command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
                                              "n": len(data), "seconds": round(time.time() - t0, 1)}, indent=1))
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
