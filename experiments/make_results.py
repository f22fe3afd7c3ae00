"""``make results``: rerun every command of ``figures/data/index.csv`` (each once, in the order first listed), then
check every claim against its file (``tests/integration/test_evidence.py``).

The experiments run first, then the derived tables (``experiments/evidence_tables.py``), then
``experiments/evidence_index.py`` rewrites the index from the new files: a number that changed then fails the
test until the docs print it. ``--dry-run`` prints the commands; ``--only SUBSTRING`` runs the commands that
contain it. Each command's wall time and the load average are printed (every run also records its own time in
its ``run.json``; ``figures/data/runtimes.csv`` collects them). Commands run under ``nice -n 5`` from the repository root
with ``PYTHONPATH`` set to it; ``nasa-lens`` means ``python -m nasa_lens.cli``.
"""
from __future__ import annotations

import argparse
import csv
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commands(index: Path) -> list[str]:
    with index.open(newline="") as fh:
        return list(dict.fromkeys(row["command"].strip() for row in csv.DictReader(fh) if row["command"].strip()))


def to_argv(command: str) -> list[str]:
    argv = shlex.split(command)
    if argv[0] == "nasa-lens":
        argv = [sys.executable, "-m", "nasa_lens.cli", *argv[1:]]
    elif argv[0] == "python":
        argv = [sys.executable, *argv[1:]]
    return ["nice", "-n", "5", *argv]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", default=str(ROOT / "figures" / "data" / "index.csv"))
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--only", default=None)
    args = ap.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    todo = [c for c in commands(Path(args.index)) if args.only is None or args.only in c]
    todo = sorted(todo, key=lambda c: "evidence_tables.py" in c)  # the derived tables after every experiment
    if args.only is None:
        todo.append("python experiments/evidence_index.py")
    rows = []
    for c in todo:
        print(f"$ {c}", flush=True)
        if args.dry_run:
            continue
        t = time.time()
        subprocess.run(to_argv(c), cwd=ROOT, env=env, check=True)
        rows.append({"command": c, "seconds": round(time.time() - t, 1), "load1": os.getloadavg()[0]})
        print(f"  {rows[-1]['seconds']} s", flush=True)
    if args.dry_run:
        return 0
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/integration/test_evidence.py"],
                          cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    raise SystemExit(main())
