"""NAS fidelity: the paper's formula (only exact zeros floored) against the old ``+1e-6`` inside the log.

One forward per batch carries both NAS hook sets side by side (``eps=1e-6`` and the default floor), so the
two scores come from the same attention patterns. For the StrategyQA *train* sample that ranks the heads of
the ablation curve (``experiments/causal_strategyqa.py``: 200 label-balanced train questions, seed 0) and the
held-out *test* sample it prints the top heads under both, and whether the top-16 order changes.

Run: ``python experiments/nas_fidelity.py [--n 200] [--out results/nas_fidelity]``
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--data", default="strategyqa")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--top", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="results/nas_fidelity")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from nasa_lens.datasets import load_dataset
    from nasa_lens.heads import format_head, ranked_heads
    from nasa_lens.models import load_model
    from nasa_lens.nas import NAS_EPS, stack_layers, nas_hooks
    from nasa_lens.prompts import iter_batches

    model = load_model(args.model)
    layers = list(range(model.n_layers))
    report = {}
    for split in ("train", "test"):
        data = load_dataset(args.data, split=split, limit=args.n, seed=0)
        old = np.zeros((len(data), model.n_layers, model.n_heads))
        new = np.zeros_like(old)
        for idx, batch in iter_batches(model, list(data), None, 16):
            h_old, s_old = nas_hooks(batch, layers=layers, eps=1e-6)
            h_new, s_new = nas_hooks(batch, layers=layers, eps=NAS_EPS)
            with torch.no_grad():
                model.bridge.run_with_hooks(batch.input_ids, fwd_hooks=[*h_old, *h_new], **batch.forward_kwargs())
            old[idx] = stack_layers(s_old, layers).double().numpy()
            new[idx] = stack_layers(s_new, layers).double().numpy()
        m_old, m_new = old.mean(0), new.mean(0)
        top_old = ranked_heads(m_old)[: args.top]
        top_new = ranked_heads(m_new)[: args.top]
        rel = np.abs(m_new - m_old) / np.maximum(np.abs(m_old), 1e-9)
        report[split] = {
            "n": len(data),
            "top_old": [[format_head(h), round(float(m_old[h]), 3)] for h in top_old],
            "top_new": [[format_head(h), round(float(m_new[h]), 3)] for h in top_new],
            "same_top_order": top_old == top_new,
            "same_top_set": set(top_old) == set(top_new),
            "max_abs_change": float(np.abs(m_new - m_old).max()),
            "max_rel_change_top": float(max(rel[h] for h in top_new)),
        }
        print(f"== {split} (n={len(data)}): top-{args.top} order unchanged: {top_old == top_new}; "
              f"max |mean change| {report[split]['max_abs_change']:.3f}")
        for (ho, vo), (hn, vn) in zip(report[split]["top_old"], report[split]["top_new"]):
            print(f"   old {ho:>5} {vo:8.3f}   new {hn:>5} {vn:8.3f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "nas_fidelity.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
