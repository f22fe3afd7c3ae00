"""Benchmark: what does direct logit attribution (split by source) cost on top of a plain forward pass?

Three variants on the SAME batch of prompts (default: 32 StrategyQA questions, one left-padded batch, SmolLM2):

(a) ``plain``:      ``bridge(input_ids, attention_mask=...)`` under ``no_grad`` (logits at every position);
(b) ``plain_last``: the same forward with the hook that keeps only the last position before the unembedding
                    (``ln_final.hook_out``), which DLA uses too: the like-for-like baseline;
(c) ``dla``:        :func:`nasa_lens.dla.dla_for_batch`: (b) plus the DLA hooks (values at the two candidates,
                    the answer row of the pattern and of ``z``, MLP outputs, the final-norm scale), each reduced
                    to ``[example, head, 3]`` inside its layer.

Measured like ``benchmarks/nas_scan.py``: each variant in its own fresh child process (this script re-invoked
with ``--child``), rounds interleaved (a, b, c, a, b, c...), one warm-up forward, then ``--reps`` timed ones;
time = median wall and CPU (user + system) time per forward; memory = growth of the resident set during the
timed forwards (``VmHWM`` after resetting it through ``/proc/self/clear_refs``), children run with
``MALLOC_MMAP_THRESHOLD_=65536``. The goal (c)/(b) <= 1.3 is judged on CPU time (the machine may be shared).

Run: ``python benchmarks/dla_cost.py [--n 32] [--reps 2] [--rounds 2] [--model smollm2-135m-instruct]``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _memory import reset_peak, status_kb  # benchmarks/_memory.py (run as a script: its folder is on sys.path)

VARIANTS = {"plain": "(a) plain forward", "plain_last": "(b) forward, last position", "dla": "(c) DLA hooks"}
GOALS = {"CPU time c/b": 1.3, "memory c/b": 1.3}


def child(args: argparse.Namespace) -> dict:
    import torch

    from nasa_lens.datasets import load_dataset
    from nasa_lens.dla import dla_for_batch
    from nasa_lens.models import load_model
    from nasa_lens.prompts import build_batch

    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    batch = build_batch(model, list(load_dataset(args.data, limit=args.n, seed=args.seed)))
    last = [("ln_final.hook_out", lambda x, hook=None: x[:, -1:])]

    def plain():
        with torch.no_grad():
            return model.bridge(batch.input_ids, **batch.forward_kwargs())

    def plain_last():
        with torch.no_grad():
            return model.bridge.run_with_hooks(batch.input_ids, fwd_hooks=last, **batch.forward_kwargs())

    def dla():
        return dla_for_batch(model, batch)

    fn = {"plain": plain, "plain_last": plain_last, "dla": dla}[args.child]
    out = fn()  # warm-up
    del out
    rss_before = status_kb("VmRSS")
    exact = reset_peak()
    times, cpu = [], []
    for _ in range(args.reps):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        del out
    peak = status_kb("VmHWM")
    return {"variant": args.child, "times": times, "cpu": cpu, "peak_mb": peak / 1024,
            "peak_delta_mb": (peak - rss_before) / 1024 if exact else float("nan"), "exact_peak": exact,
            "batch": [len(batch), batch.seq_len], "model": model.name, "layers_heads": [model.n_layers, model.n_heads]}


def run_child(variant: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, "--n", str(args.n), "--reps", str(args.reps), "--seed", str(args.seed),
           "--model", args.model, "--data", args.data, "--threads", str(args.threads)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"variant {variant} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=32, help="prompts in the batch (default 32)")
    p.add_argument("--reps", type=int, default=2, help="timed forwards per child (default 2)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds of children (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--data", default="strategyqa")
    p.add_argument("--threads", type=int, default=2, help="torch threads per child (default 2)")
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--json", default=None, help="also write the raw results here")
    p.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for r in range(args.rounds):
        for v in VARIANTS:
            print(f"round {r + 1}/{args.rounds}: {VARIANTS[v]} ...", file=sys.stderr, flush=True)
            runs[v].append(run_child(v, args))
    rows = {}
    for v, rs in runs.items():
        times = [t for r in rs for t in r["times"]]
        cpu = [t for r in rs for t in r["cpu"]]
        rows[v] = {"time_s": statistics.median(times), "cpu_s": statistics.median(cpu),
                   "peak_delta_mb": statistics.median(r["peak_delta_mb"] for r in rs),
                   "peak_mb": statistics.median(r["peak_mb"] for r in rs)}
    info = runs["plain"][0]
    print(f"\nDLA cost benchmark: {info['model']} ({info['layers_heads'][0]} layers x {info['layers_heads'][1]} heads), "
          f"one batch of {info['batch'][0]} {args.data} prompts x {info['batch'][1]} tokens, {args.threads} threads, "
          f"{args.rounds} rounds x {args.reps} reps per variant")
    print(f"{'variant':30s} {'wall s':>8s} {'CPU s':>8s} {'peak dRSS MB':>13s} {'peak RSS MB':>12s}")
    for v, row in rows.items():
        print(f"{VARIANTS[v]:30s} {row['time_s']:8.3f} {row['cpu_s']:8.3f} {row['peak_delta_mb']:13.1f} {row['peak_mb']:12.1f}")
    a, b, c = rows["plain"], rows["plain_last"], rows["dla"]
    def ratio(x: float, y: float) -> float:
        return x / y if y > 0 else float("nan")  # a baseline that grows by 0 MB has no ratio

    ratios = {"CPU time c/b": ratio(c["cpu_s"], b["cpu_s"]), "wall time c/b": ratio(c["time_s"], b["time_s"]),
              "memory c/b": ratio(c["peak_delta_mb"], b["peak_delta_mb"]), "CPU time c/a": ratio(c["cpu_s"], a["cpu_s"]),
              "memory c/a": ratio(c["peak_delta_mb"], a["peak_delta_mb"]), "total RSS c/b": ratio(c["peak_mb"], b["peak_mb"])}
    print("\nratios:")
    for k, val in ratios.items():
        goal = GOALS.get(k)
        verdict = "" if goal is None or val != val else f"  goal <= {goal}: {'met' if val <= goal else 'NOT met'}"
        print(f"  {k:14s} {val:6.3f}{verdict}")
    if args.json:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from nasa_lens.io import write_json

        write_json(args.json, {"args": vars(args), "rows": rows, "ratios": ratios, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
