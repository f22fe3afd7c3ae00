"""One NASA step vs one step of full fine-tuning: time and peak memory, side by side in one run.

Both modes take the same optimizer step (AdamW) on the same label-balanced batch with the same loss (2-way CE
over the answer tokens at the last position, :func:`nasa_lens.finetune.batch_loss`):

* ``nasa``: only the selected heads' q-row deltas are trainable (``--heads``; default SmolLM2's top-8 NAS heads
  on StrategyQA + GSM8K-verify); the base model is frozen and the deltas act through the adapter hooks;
* ``full``: every parameter of the model is trainable (no adapter), AdamW over all of them.

Method. Each mode runs in its OWN fresh subprocess (so one mode's allocations cannot hide the other's peak),
alternating ``--rounds`` times (nasa, full, nasa, full, ...), each child doing one warm-up step and ``--reps``
timed steps (wall clock, ``time.perf_counter``, median reported). Memory is the process's peak resident set
size from ``resource.getrusage(RUSAGE_SELF).ru_maxrss``: read once after the model is loaded and the batch built
(``rss_loaded``) and once after the steps (``rss_peak``); ``rss_train = rss_peak - rss_loaded`` is what training
added on top of the loaded model (activations kept for backward, gradients, optimizer state). The parent prints
one row per mode (medians over rounds), the ratios full / nasa, and the trainable-parameter counts.

    .venv/bin/python benchmarks/finetune_step.py                       # SmolLM2, batch 8
    .venv/bin/python benchmarks/finetune_step.py --model tiny-random   # seconds, a smoke test
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

DEFAULT_HEADS = "16.0,1.2,9.0,14.4,16.3,18.4,13.6,14.0"  # SmolLM2 top-8 by NAS (64 training examples)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from nasa_lens.adapters import HeadAdapter, model_shape
    from nasa_lens.datasets import load_dataset
    from nasa_lens.heads import parse_heads
    from nasa_lens.models import load_model
    from nasa_lens.finetune.data import BalancedBatches
    from nasa_lens.finetune.train import batch_loss
    from nasa_lens.prompts import build_batch

    model = load_model(args.model)
    examples = list(load_dataset(args.data, split="train", limit=4 * args.batch_size, seed=0))
    rows = BalancedBatches([e.label for e in examples], args.batch_size, seed=0).rows(0)
    batch = build_batch(model, [examples[i] for i in rows])
    heads = parse_heads(args.heads if args.model != "tiny-random" else "0.1,1.2", model.n_layers, model.n_heads)
    if args.mode == "nasa":
        adapter = HeadAdapter(heads, shape=model_shape(model), base_model=model.name)
        params = list(adapter.parameters())
        adapter.attach(model)
    else:
        params = list(model.bridge.parameters())
        for p in params:
            p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=1e-5)
    n_params = sum(p.numel() for p in params)
    rss_loaded = _rss_mb()
    times = []
    for i in range(args.reps + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss, _ = batch_loss(model, batch, heads)
        loss.backward()
        opt.step()
        if i > 0:  # the first step is a warm-up (allocator, optimizer state creation)
            times.append(time.perf_counter() - t0)
    print(json.dumps({
        "mode": args.mode, "n_params": n_params, "step_s": statistics.median(times), "rss_loaded_mb": rss_loaded,
        "rss_peak_mb": _rss_mb(), "seq_len": batch.seq_len, "batch": len(batch),
    }))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--data", default="strategyqa")
    ap.add_argument("--heads", default=DEFAULT_HEADS)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", choices=["nasa", "full"], dest="mode")
    args = ap.parse_args()
    if args.mode:
        child(args)
        return
    results: dict[str, list[dict]] = {"nasa": [], "full": []}
    for _ in range(args.rounds):
        for mode in ("nasa", "full"):
            cmd = [sys.executable, os.path.abspath(__file__), "--child", mode, "--model", args.model, "--data", args.data,
                   "--heads", args.heads, "--batch-size", str(args.batch_size), "--reps", str(args.reps), "--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                sys.exit(f"{mode} child failed:\n{out.stderr[-3000:]}")
            results[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    rows = {}
    for mode, rs in results.items():
        rows[mode] = {
            "n_params": rs[0]["n_params"],
            "step_s": statistics.median(r["step_s"] for r in rs),
            "rss_peak_mb": statistics.median(r["rss_peak_mb"] for r in rs),
            "rss_train_mb": statistics.median(r["rss_peak_mb"] - r["rss_loaded_mb"] for r in rs),
        }
    first = results["nasa"][0]
    print(f"model {args.model}, batch {first['batch']} x {first['seq_len']} tokens ({args.data}), {args.threads} threads, "
          f"{args.rounds} rounds x {args.reps} timed steps per mode (fresh process each)")
    print(f"{'mode':6s} {'trainable params':>17s} {'step s (median)':>16s} {'peak RSS MB':>12s} {'RSS added by training MB':>25s}")
    for mode, r in rows.items():
        print(f"{mode:6s} {r['n_params']:>17,d} {r['step_s']:>16.3f} {r['rss_peak_mb']:>12.0f} {r['rss_train_mb']:>25.0f}")
    n, f = rows["nasa"], rows["full"]
    print(f"ratios full / nasa: trainable params {f['n_params'] / n['n_params']:.0f}x, step time {f['step_s'] / n['step_s']:.2f}x, "
          f"peak RSS {f['rss_peak_mb'] / n['rss_peak_mb']:.2f}x, RSS added by training "
          f"{f['rss_train_mb'] / max(n['rss_train_mb'], 1e-9):.2f}x")


if __name__ == "__main__":
    main()
