"""Benchmark: what does scoring NAS cost on top of a plain forward pass?

Three variants on the SAME batch of prompts (default: 32 StrategyQA questions, one left-padded batch, SmolLM2):

(a) ``plain``: ``bridge(input_ids, attention_mask=...)`` under ``no_grad``;
(b) ``nas``:   :func:`nasa_lens.nas.nas_for_batch`: the same forward with the NAS hooks, which keep only the
               two candidate columns of the needed query rows of each layer's pattern;
(c) ``cache``: the naive way: ``run_with_cache(names_filter=<every hook_pattern>)`` (every layer's full
               ``[batch, head, q, k]`` pattern kept until the end), then :func:`nas_from_pattern` per layer.

How it measures (and why this way):

* Every variant runs in its own fresh child process (this script re-invoked with ``--child``), so one
  variant's allocations cannot hide inside another's: the model is loaded, the batch built, one warm-up
  forward run, and then the measured repetitions.
* Memory = the peak resident set size *during the measured forwards* minus the resident set size just
  before them. Linux keeps a per-process high-water mark (``VmHWM`` in ``/proc/self/status``) which is reset
  by writing ``5`` to ``/proc/self/clear_refs``; the child resets it after the warm-up, runs the forwards
  and reads it back. This counts every byte torch allocates on the CPU (``tracemalloc`` sees only Python
  objects, not torch's buffers). The children run with ``MALLOC_MMAP_THRESHOLD_=65536`` so that glibc
  serves large tensors with mmap and returns them to the OS when freed (the default dynamic threshold lets
  freed buffers stay resident, which would let the warm-up hide part of the peak). If ``clear_refs`` is
  not writable the child reports the whole-process peak instead and says so.
* Time = median over the repetitions of each forward's wall time and of its CPU time (user + system of
  the child, ``time.process_time``), over ``--rounds`` rounds of children run interleaved (a, b, c, a, b,
  c...). On a shared machine the wall time depends on what else runs (other processes take the cores);
  the CPU time counts only the work this process did, so the time goal is judged on CPU time and both
  are printed.

Run: ``python benchmarks/nas_scan.py [--n 32] [--reps 2] [--rounds 2] [--model smollm2-135m-instruct]``.
Goals printed at the end: (b)/(a) time <= 1.15 and memory <= 1.2; (c)/(b) memory shows what the hooks save.
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

VARIANTS = {"plain": "(a) plain forward", "nas": "(b) NAS hooks", "cache": "(c) run_with_cache + NAS"}
GOALS = {"CPU time b/a": 1.15, "memory b/a": 1.2}


# ------------------------------------------------------------------------------------------------ child


def _examples(n: int, seed: int):
    from nasa_lens.datasets import load_dataset

    try:
        return load_dataset("strategyqa", limit=n, seed=seed), "strategyqa"
    except Exception as exc:  # noqa: BLE001 - fall back to a generated set, and say so
        print(f"strategyqa unavailable ({exc}); using the arithmetic generator", file=sys.stderr)
        return load_dataset("arithmetic", limit=n, seed=seed), "arithmetic"


def child(args: argparse.Namespace) -> dict:
    import torch

    from nasa_lens.models import load_model
    from nasa_lens.nas import nas_for_batch, nas_from_pattern, nas_query_mask, pattern_hook_name
    from nasa_lens.prompts import build_batch

    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    examples, data_name = _examples(args.n, args.seed)
    batch = build_batch(model, list(examples))
    names = [pattern_hook_name(layer) for layer in range(model.n_layers)]

    def plain():
        with torch.no_grad():
            return model.bridge(batch.input_ids, **batch.forward_kwargs())

    def nas():
        return nas_for_batch(model, batch)

    def cache():
        with torch.no_grad():
            _, store = model.bridge.run_with_cache(batch.input_ids, names_filter=lambda name: name in names, **batch.forward_kwargs())
            mask = nas_query_mask(batch)
            return torch.stack([nas_from_pattern(store[name], batch.pos_yes, batch.pos_no, mask) for name in names], dim=1)

    fn = {"plain": plain, "nas": nas, "cache": cache}[args.child]
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
    return {
        "variant": args.child,
        "times": times,
        "cpu": cpu,
        "rss_before_mb": rss_before / 1024,
        "peak_mb": peak / 1024,
        "peak_delta_mb": (peak - rss_before) / 1024 if exact else float("nan"),
        "exact_peak": exact,
        "batch": [len(batch), batch.seq_len],
        "data": data_name,
        "model": model.name,
        "layers_heads": [model.n_layers, model.n_heads],
    }


# ------------------------------------------------------------------------------------------------ parent


def run_child(variant: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, "--n", str(args.n), "--reps", str(args.reps),
           "--seed", str(args.seed), "--model", args.model, "--threads", str(args.threads)]
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
    p.add_argument("--threads", type=int, default=2, help="torch threads per child (default 2)")
    p.add_argument("--timeout", type=float, default=900, help="seconds before a child is killed")
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
        rows[v] = {
            "time_s": statistics.median(times),
            "time_min_s": min(times),
            "time_max_s": max(times),
            "cpu_s": statistics.median(cpu),
            "peak_delta_mb": statistics.median(r["peak_delta_mb"] for r in rs),
            "peak_mb": statistics.median(r["peak_mb"] for r in rs),
            "n_times": len(times),
        }
    info = runs["plain"][0]
    print(f"\nNAS scan benchmark: {info['model']} ({info['layers_heads'][0]} layers x {info['layers_heads'][1]} heads), "
          f"one batch of {info['batch'][0]} {info['data']} prompts x {info['batch'][1]} tokens, "
          f"{args.threads} threads, {args.rounds} rounds x {args.reps} reps per variant")
    if not info["exact_peak"]:
        print("note: /proc/self/clear_refs not writable; memory is the whole-process peak")
    print(f"{'variant':26s} {'wall s':>8s} {'(min':>7s} {'max)':>7s} {'CPU s':>8s} {'peak dRSS MB':>13s} {'peak RSS MB':>12s}")
    for v, row in rows.items():
        print(f"{VARIANTS[v]:26s} {row['time_s']:8.3f} {row['time_min_s']:7.3f} {row['time_max_s']:7.3f} {row['cpu_s']:8.3f} "
              f"{row['peak_delta_mb']:13.1f} {row['peak_mb']:12.1f}")
    print("(wall and CPU: medians per forward; peak dRSS: growth of the resident set during the forwards)")
    a, b, c = rows["plain"], rows["nas"], rows["cache"]
    ratios = {
        "CPU time b/a": b["cpu_s"] / a["cpu_s"],
        "wall time b/a": b["time_s"] / a["time_s"],
        "memory b/a": b["peak_delta_mb"] / a["peak_delta_mb"],
        "memory c/b": c["peak_delta_mb"] / b["peak_delta_mb"],
        "CPU time c/b": c["cpu_s"] / b["cpu_s"],
        "total RSS b/a": b["peak_mb"] / a["peak_mb"],
    }
    print("\nratios:")
    for k, val in ratios.items():
        goal = GOALS.get(k)
        verdict = "" if goal is None else f"  goal <= {goal}: {'met' if val <= goal else 'NOT met'}"
        print(f"  {k:14s} {val:6.3f}{verdict}")
    if args.json:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from nasa_lens.io import write_json

        write_json(args.json, {"args": vars(args), "rows": rows, "ratios": ratios, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
