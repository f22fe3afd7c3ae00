"""Write ``figures/data/index.csv``: every number the README's findings and docs/results.md print, with the file
it comes from, the command that wrote the file and the spec that recomputes it (``tests/test_evidence.py``).

Each claim below names its file, a column, a pandas ``query`` filter and a statistic (see the test's docstring)
and a format; this script recomputes the value with the test's own code and writes it as the docs must print
it. A rerun that changes a number changes index.csv, and the test then fails until the docs say the new number.

Run: ``python experiments/evidence_index.py`` (seconds; ``make results`` runs it after the experiments).
"""
from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
D = "figures/data"
SQA = "strategyqa-test200"
LK = "lookup-d1-test200"
SMOL, GEMMA = "smollm2-135m-instruct", "gemma3-270m"
SCAN = "python experiments/model_scan.py --model {m} --data {d} --split test --limit 200{f} --out figures/data/scans/{m}_{n}_{fmt}"
TABLES = "python experiments/evidence_tables.py"
DEBIAS = "python experiments/debias_lookup.py --threads 2 --out figures/data/debias_smollm2_lookup"
DEBIAS_G = ('python experiments/debias_lookup.py --model gemma3-270m --threads 2 --once base,threshold --lambdas --no-random '
            '--extra "" --seeds 0 --out figures/data/debias_gemma3-270m_lookup')


def scan(m: str, n: str, fmt: str = "yes-no") -> tuple[str, str]:
    d = {"strategyqa-test200": "strategyqa", "lookup-d1-test200": "lookup:d1"}[n]
    f = "" if fmt == "yes-no" else f" --format {fmt}"
    return f"{D}/scans/{m}_{n}_{fmt}", SCAN.format(m=m, d=d, f=f, n=n, fmt=fmt)


CLAIMS: list[dict] = []


def claim(name: str, file: str, command: str, column: str, filter: str, stat: str, fmt: str) -> None:
    CLAIMS.append(dict(claim=name, file=file, command=command, column=column, filter=filter, stat=stat, fmt=fmt))


def bias_claims(m: str, n: str, metrics=("yes_rate", "precision", "recall", "pr_gap", "accuracy", "auroc")) -> None:
    folder, cmd = scan(m, n)
    f = f"{folder}/predictions.csv"
    claim(f"{m} {n}: questions", f, cmd, "id", "", "count", "{:.0f}")
    for k in metrics:
        for stat in ("metric", "metric_lo", "metric_hi"):
            claim(f"{m} {n}: {k} ({stat})", f, cmd, k, "", stat, "{:.3f}" if k != "yes_rate" else "{:.2f}")


def nas_claims(m: str, n: str, top: int = 5) -> None:
    folder, cmd = scan(m, n)
    f = f"{folder}/nas.csv"
    claim(f"{m} {n}: heads scanned", f, cmd, "layer", "", "count", "{:.0f}")
    for r in range(1, top + 1):
        claim(f"{m} {n}: NAS rank {r} head", f, cmd, "", f"rank == {r}", "head", "head")
        claim(f"{m} {n}: NAS rank {r} mean NAS", f, cmd, "nas_mean", f"rank == {r}", "value", "{:.1f}")


def build() -> None:
    for m in (SMOL, GEMMA):
        bias_claims(m, SQA)
        bias_claims(m, LK)
        nas_claims(m, SQA)


def main() -> int:
    spec = importlib.util.spec_from_file_location("test_evidence", ROOT / "tests" / "test_evidence.py")
    te = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(te)
    build()
    rows = []
    for c in CLAIMS:
        if not (ROOT / c["file"]).is_file():
            print(f"skipped (no file yet): {c['claim']} ({c['file']})")
            continue
        x = te.recompute(c)
        value = x if c["fmt"] == "head" else c["fmt"].format(x).replace("-0.000", "0.000")
        rows.append({"claim": c["claim"], "value": value, "file": c["file"], "command": c["command"], "column": c["column"],
                     "filter": c["filter"], "stat": c["stat"]})
    with (ROOT / D / "index.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, ["claim", "value", "file", "command", "column", "filter", "stat"])
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {len(rows)} claims to {D}/index.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
