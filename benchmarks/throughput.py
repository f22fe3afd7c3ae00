"""Throughput side by side: questions per second of a plain Hugging Face forward and of nasa-lens' procedures.

For the same questions, the same batches (nasa-lens' own: sorted by length, left-padded, ``--batch-size``) and
the same thread count, in ONE run (so contention on a shared machine hits every row alike):

* ``hf eager``      : a separate Hugging Face copy of the model (no TransformerLens), ``attn_implementation="eager"``
                      (the attention the bridge must use to expose patterns): ``model(input_ids, attention_mask)``;
* ``hf sdpa``       : the same copy with PyTorch's fused attention (what plain HF uses by default);
* ``bridge forward``: the TransformerBridge's plain forward (no hooks);
* ``eval``          : :func:`nasa_lens.evaluate.evaluate` (forward + answer logits; one bootstrap draw);
* ``scan``          : :func:`nasa_lens.nas.scan_nas` (forward with pattern hooks, NAS of every head);
* ``dla``           : :func:`nasa_lens.dla.scan_dla` when that module exists;
* ``scan 2-proc DP``: the same scan under ``torchrun --nproc-per-node 2`` (each rank one thread; time from the
                      first barrier after loading to the end of the gather, median over rounds).

Rows are timed round-robin (``--rounds`` rounds, median, after a one-batch warm-up), each with all no-grad
forwards of all questions.
The table gives questions/s and the ratio of time against ``hf eager`` (1.00 = as fast as plain HF eager).

    python benchmarks/throughput.py                          # SmolLM2, 64 StrategyQA questions, batch 16
    python benchmarks/throughput.py --model tiny-random --limit 16 --rounds 1   # a smoke test
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data(args):
    from nasa_lens.datasets import load_dataset

    try:
        return list(load_dataset(args.data, limit=args.limit, seed=0))
    except Exception as exc:  # noqa: BLE001 - a registry set not cached here: fall back to a generator
        print(f"note: {args.data} not available ({exc}); using arithmetic", file=sys.stderr)
        return list(load_dataset("arithmetic", limit=args.limit, seed=0))


def dp_worker(args) -> None:
    """Under torchrun: load, then time ``scan_nas`` ``rounds`` times between barriers; rank 0 prints JSON."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    from nasa_lens.models import load_model
    from nasa_lens.nas import scan_nas

    model = load_model(args.model)
    data = _data(args)
    times = []
    for _ in range(args.rounds):
        dist.barrier()
        t0 = time.perf_counter()
        scan_nas(model, data, batch_size=args.batch_size, progress=False)
        dist.barrier()
        times.append(time.perf_counter() - t0)
    if dist.get_rank() == 0:
        print("DP-RESULT " + json.dumps({"times": times, "n": len(data)}))
    dist.destroy_process_group()


def _launch_dp(args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--nnodes=1", "--master-addr=127.0.0.1",
           f"--master-port={_free_port()}", str(Path(__file__).resolve()), "--dp-worker", "--model", args.model,
           "--data", args.data, "--limit", str(args.limit), "--batch-size", str(args.batch_size), "--rounds", str(args.rounds)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    for line in proc.stdout.splitlines():
        if line.startswith("DP-RESULT "):
            return json.loads(line[len("DP-RESULT "):])
    raise RuntimeError(f"torchrun failed ({proc.returncode}): {proc.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--data", default="strategyqa")
    p.add_argument("--limit", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch threads of the one-process rows (DP: 1 per rank)")
    p.add_argument("--no-dp", action="store_true", help="skip the 2-process row")
    p.add_argument("--dp-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.dp_worker:
        dp_worker(args)
        return 0

    import torch

    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM

    from nasa_lens.evaluate import evaluate
    from nasa_lens.models import load_model
    from nasa_lens.nas import scan_nas
    from nasa_lens.prompts import iter_batches

    model = load_model(args.model)
    data = _data(args)
    batches = [b for _, b in iter_batches(model, data, None, args.batch_size)]
    hf = {}
    folder = model.source if Path(str(model.source)).is_dir() else None
    for impl in ("eager", "sdpa"):
        if folder is not None:
            hf[impl] = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation=impl).eval()
        else:  # tiny-random: the same weights in a fresh HF copy
            import copy

            m = copy.deepcopy(model.bridge.original_model)
            m.config._attn_implementation = impl
            hf[impl] = m.eval()

    def hf_forward(m):
        with torch.no_grad():
            for b in batches:
                m(input_ids=b.input_ids, attention_mask=b.attention_mask)

    def bridge_forward():
        with torch.no_grad():
            for b in batches:
                model.bridge(b.input_ids, **b.forward_kwargs())

    rows = {
        "hf eager": lambda: hf_forward(hf["eager"]),
        "hf sdpa": lambda: hf_forward(hf["sdpa"]),
        "bridge forward": bridge_forward,
        "eval": lambda: evaluate(model, data, batch_size=args.batch_size, n_boot=1, progress=False),
        "scan": lambda: scan_nas(model, data, batch_size=args.batch_size, progress=False),
    }
    try:
        from nasa_lens.dla import scan_dla
    except ImportError:
        print("note: nasa_lens.dla is not on this branch: no dla row", file=sys.stderr)
    else:
        rows["dla"] = lambda: scan_dla(model, data, batch_size=args.batch_size, progress=False)
    warm = data[: args.batch_size]
    with torch.no_grad():  # warm-up on one batch (allocator, lazy inits); not timed
        hf["eager"](input_ids=batches[0].input_ids, attention_mask=batches[0].attention_mask)
        hf["sdpa"](input_ids=batches[0].input_ids, attention_mask=batches[0].attention_mask)
        model.bridge(batches[0].input_ids, **batches[0].forward_kwargs())
    evaluate(model, warm, batch_size=args.batch_size, n_boot=1, progress=False)
    scan_nas(model, warm, batch_size=args.batch_size, progress=False)
    times: dict[str, list[float]] = {k: [] for k in rows}
    dp = None
    for r in range(args.rounds):
        for name, fn in rows.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            print(f"round {r + 1}: {name} {times[name][-1]:.2f} s", file=sys.stderr, flush=True)
        if r == 0 and not args.no_dp:
            dp = _launch_dp(args)  # between rounds: contention of the same period
            print(f"2-process DP scan: {dp['times']}", file=sys.stderr, flush=True)
    if dp is not None:
        times["scan 2-proc DP"] = dp["times"]
    n = len(data)
    base = statistics.median(times["hf eager"])
    load = os.getloadavg()
    print(f"{args.model}, {n} {args.data} questions, batch {args.batch_size}, {args.threads} threads "
          f"(DP: 2 ranks x 1 thread), median of {args.rounds} rounds; load average {load[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'row':16s} {'seconds':>8s} {'q/s':>8s} {'time / hf eager':>16s}")
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"{name:16s} {t:8.2f} {n / t:8.1f} {t / base:16.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
