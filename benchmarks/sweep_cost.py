"""Benchmark: every head's ablation effect, three ways, as whole commands, beside one ``nasa-lens eval``.

Each variant runs as its own ``nasa-lens`` process (model load, data, sweep, files: the whole command), one
after the other on the same examples:

* ``eval``: one ``nasa-lens eval`` of the data (the unit of cost);
* ``suffix exact``: ``nasa-lens sweep --positions after`` (each head zero-ablated on the suffix, the suffix
  runner recomputing only the columns after the later candidate from the head's layer);
* ``whole exact``: ``nasa-lens sweep --positions all`` (each head ablated on every position; every column
  recomputed, from the head's layer);
* ``attribution``: ``nasa-lens sweep --method attribution --positions after`` (one forward and one backward
  per batch, the gradient estimate of the suffix ablation);
* with ``--legacy``: the whole-prompt sweep as it ran before the suffix runner
  (``causal.exact_effects_full_forward``: ``run_with_hooks(start_at_layer=l)``, which still runs every block).

Printed: wall time and peak resident memory (the child's ``VmHWM``) of each, their ratio to ``eval``, and the
Spearman correlation of the per-head effects between the variants. The machine's load average is printed
before and after: on a shared machine, compare only numbers of one run.

Run: ``python benchmarks/sweep_cost.py [--n 64] [--data arithmetic] [--model smollm2-135m-instruct] [--legacy]``
Goal: the suffix sweep of all heads <= 15x one ``nasa-lens eval`` of the same data (whole commands).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL = 15.0
HERE = Path(__file__).resolve().parent


def _child(out_json: str, argv: list[str]) -> int:
    """Run one command in this process and record its wall time and peak memory."""
    sys.path.insert(0, str(HERE))
    from _memory import status_kb

    t0 = time.perf_counter()
    if argv[0] == "legacy":
        code = _legacy(argv[1:])
    else:
        from nasa_lens.cli import main

        code = main(argv)
    Path(out_json).write_text(json.dumps({"code": code, "seconds": time.perf_counter() - t0, "peak_mb": status_kb("VmHWM") / 1024}))
    return code


def _legacy(argv: list[str]) -> int:
    """The pre-suffix-runner whole-prompt exact sweep (library call), saved like ``nasa-lens sweep``."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--data")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    from nasa_lens import causal
    from nasa_lens.datasets import load_dataset
    from nasa_lens.models import load_model

    model = load_model(a.model)
    data = load_dataset(a.data, limit=a.limit)
    res = causal.exact_effects_full_forward(model, list(data), batch_size=a.batch_size, progress=False)
    res.write_sweep(a.out)
    return 0


def _run(name: str, argv: list[str], threads: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        record = f.name
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", record, "--", *argv], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    inner = json.loads(Path(record).read_text())
    os.unlink(record)
    out = {"name": name, "wall_s": wall, "peak_mb": inner["peak_mb"]}
    print(f"  {name:<16} {wall:8.1f} s   peak {inner['peak_mb']:7.0f} MB", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        return _child(argv[1], argv[3:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--data", default="arithmetic")
    ap.add_argument("--n", type=int, default=64, help="examples (label-balanced)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--legacy", action="store_true", help="also time the pre-suffix-runner whole-prompt sweep (slow)")
    ap.add_argument("--skip-whole", action="store_true", help="leave out the whole-prompt exact sweep")
    ap.add_argument("--out", default=None, help="keep every variant's folder here (default: a temporary folder)")
    args = ap.parse_args(argv)

    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="sweep_cost."))
    common = ["--model", args.model, "--data", args.data, "--limit", str(args.n)]
    sweep = ["sweep", *common, "--batch-size", str(args.batch_size), "--no-png", "--mode", "zero"]
    variants = [
        ("eval", ["eval", *common, "--batch-size", str(args.batch_size), "--out", str(root / "eval")]),
        ("suffix exact", [*sweep, "--positions", "after", "--out", str(root / "suffix")]),
        ("attribution", [*sweep, "--positions", "after", "--method", "attribution", "--out", str(root / "attribution")]),
    ]
    if not args.skip_whole:
        variants.append(("whole exact", [*sweep, "--positions", "all", "--out", str(root / "whole")]))
    if args.legacy:
        variants.append(("legacy whole", ["legacy", *common, "--batch-size", str(args.batch_size), "--out", str(root / "legacy")]))
    print(f"{args.model}, {args.data}, n={args.n}, batch {args.batch_size}, {args.threads} threads; "
          f"load average before: {os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} CPUs")
    rows = [_run(name, cmd, args.threads) for name, cmd in variants]
    print(f"load average after: {os.getloadavg()[0]:.2f}, {os.getloadavg()[1]:.2f} (1, 5 min)")

    from nasa_lens.causal import EffectSweepResult, rank_correlation

    base = rows[0]["wall_s"]
    print("\nvariant           wall s   x eval   peak MB")
    for r in rows:
        print(f"  {r['name']:<14} {r['wall_s']:8.1f} {r['wall_s'] / base:8.1f} {r['peak_mb']:9.0f}")
    folder = {"suffix exact": "suffix", "attribution": "attribution", "whole exact": "whole", "legacy whole": "legacy"}
    sweeps = {r["name"]: EffectSweepResult.read_sweep(root / folder[r["name"]]) for r in rows[1:]}
    names = list(sweeps)
    print("\nSpearman of the per-head effects:")
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            c = rank_correlation(sweeps[a].effects, sweeps[b].effects)
            print(f"  {a} vs {b}: {c['spearman']:+.3f} (Pearson {c['pearson']:+.3f})")
    for name, res in sweeps.items():
        print(f"  top 5 {name}: {', '.join(f'{layer}.{h}' for layer, h in res.top_heads(5))}")
    ratio = rows[1]["wall_s"] / base
    print(f"\ngoal: suffix sweep <= {GOAL:.0f}x eval: {ratio:.1f}x, {'met' if ratio <= GOAL else 'NOT met'}")
    (root / "sweep_cost.json").write_text(json.dumps({"rows": rows, "args": vars(args)}, indent=2))
    print(f"folders and sweep_cost.json in {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
