"""Write ``figures/data/index.csv``: every number the README's findings and docs/results.md print, with the file
it comes from, the command that wrote the file and the spec that recomputes it (``tests/integration/test_evidence.py``).

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
SCAN = "python experiments/model_scan.py --threads 1 --model {m} --data {d} --split test --limit 200{f} --out figures/data/scans/{m}_{n}_{fmt}"
TABLES = "python experiments/evidence_tables.py"
_B = 'python experiments/debias_lookup.py --threads 1 --steps 10 --extra ""'
DEBIAS = {"s0": f"{_B} --seeds 0 --lambdas 0 --out figures/data/debias_smollm2_lookup_s0",
          "s12": f'{_B} --once "" --seeds 1 2 --lambdas 0 --out figures/data/debias_smollm2_lookup_s12',
          "lambda": f"{_B} --seeds 0 --lambdas 0.1 1 --no-random --out figures/data/debias_smollm2_lookup_lambda",
          "gemma": ('python experiments/debias_lookup.py --threads 1 --model gemma3-270m --once base,threshold --lambdas --no-random '
                    '--extra "" --seeds 0 --out figures/data/debias_gemma3-270m_lookup'),
          "gemma_nasa": (f'{_B} --model gemma3-270m --once "" --seeds 0 --lambdas 0 '
                         '--out figures/data/debias_gemma3-270m_lookup_nasa')}
FOLDER = {"s0": "debias_smollm2_lookup_s0", "s12": "debias_smollm2_lookup_s12", "lambda": "debias_smollm2_lookup_lambda",
          "gemma": "debias_gemma3-270m_lookup", "gemma_nasa": "debias_gemma3-270m_lookup_nasa"}


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
            claim(f"{m} {n}: {k} ({stat})", f, cmd, k, "", stat, "{:.3f}")


def nas_claims(m: str, n: str, top: int = 5) -> None:
    folder, cmd = scan(m, n)
    f = f"{folder}/nas.csv"
    claim(f"{m} {n}: heads scanned", f, cmd, "layer", "", "count", "{:.0f}")
    for r in range(1, top + 1):
        claim(f"{m} {n}: NAS rank {r} head", f, cmd, "", f"rank == {r}", "head", "head")
        claim(f"{m} {n}: NAS rank {r} mean NAS", f, cmd, "nas_mean", f"rank == {r}", "value", "{:.1f}")


def fix_claims(run: str, method: str, seed: int, metrics=("accuracy", "yes_rate", "auroc", "pr_gap", "recall", "precision")) -> None:
    f = f"{D}/{FOLDER[run]}/comparison.csv"
    q = f"method == '{method}' and seed == {seed}"
    claim(f"{run} {method} seed {seed}: n", f, DEBIAS[run], "n", q, "value", "{:.0f}")
    for k in metrics:
        for suffix in ("", "_lo", "_hi"):
            claim(f"{run} {method} seed {seed}: {k}{suffix}", f, DEBIAS[run], k + suffix, q, "value",
                  "{:.3f}")
    claim(f"{run} {method} seed {seed}: lm_loss", f, DEBIAS[run], "lm_loss", q, "value", "{:.3f}")
    if method == "threshold":
        claim(f"{run} threshold fitted", f, DEBIAS[run], "threshold", q, "value", "{:.3f}")


def across_seeds(method: str, model: str = SMOL) -> None:
    f = f"{D}/comparison.csv"
    q = f"method == '{method}' and model == '{model}'"
    claim(f"{method}: seeds", f, TABLES, "seed", q, "nunique", "{:.0f}")
    for k in ("accuracy", "yes_rate", "auroc", "recall"):
        for stat in ("mean", "min", "max"):
            claim(f"{method}: {k} {stat} over seeds", f, TABLES, k, q, stat, "{:.3f}")


def order_claims(m: str, n: str = SQA) -> None:
    f = f"{D}/nas_order_summary.csv"
    q = f"model == '{m}' and data == '{n}'"
    for k in ("pearson", "spearman"):
        for suffix in ("", "_lo", "_hi"):
            claim(f"order {m}: {k}{suffix}", f, TABLES, k + suffix, q, "value", "{:.2f}")
    for k in ("n_no-both", "n_yes-both", "n_second", "n_first", "n_weak", "top10_second", "top10_no_both", "heads", "n"):
        claim(f"order {m}: {k}", f, TABLES, k, q, "value", "{:.0f}")
    f = f"{D}/nas_order_{m}_{n}.csv"
    for r in (1, 2, 3, 4, 5):
        q = f"rank_yes_no == {r}"
        claim(f"order {m}: NAS rank {r} head", f, TABLES, "", q, "head", "head")
        for col in ("nas_yes_no", "nas_no_yes"):
            claim(f"order {m}: NAS rank {r} {col}", f, TABLES, col, q, "value", "{:.1f}")
    for kind in ("no_both", "second"):
        for r in (1, 2, 3):
            claim(f"order {m}: {kind} head {r}", f, TABLES, "", f"{kind}_rank == {r}", "head", "head")
            for col in ("nas_yes_no", "nas_no_yes"):
                claim(f"order {m}: {kind} head {r} {col}", f, TABLES, col, f"{kind}_rank == {r}", "value", "{:.1f}")


ORDER_CAUSAL = "python experiments/order_causal.py --limit 100 --n-random 6 --out figures/data/order_causal_smollm2"


def order_causal_claims() -> None:
    f = f"{D}/order_causal_smollm2/effects.csv"
    for fmt in ("yes-no", "no-yes"):
        for st in ("none", "no-both", "second", "random0", "random1"):
            q = f"format == '{fmt}' and set == '{st}'"
            claim(f"order causal {fmt} {st}: n", f, ORDER_CAUSAL, "n", q, "value", "{:.0f}")
            claim(f"order causal {fmt} {st}: yes_rate", f, ORDER_CAUSAL, "yes_rate", q, "value", "{:.2f}")
            for k in ("d_yes_rate", "d_logit_diff"):
                for suffix in ("", "_lo", "_hi"):
                    claim(f"order causal {fmt} {st}: {k}{suffix}", f, ORDER_CAUSAL, k + suffix, q, "value", "{:+.2f}")
        q = f"format == '{fmt}' and set not in ['none', 'no-both', 'second']"
        claim(f"order causal {fmt} random: sets", f, ORDER_CAUSAL, "set", q, "nunique", "{:.0f}")
        for k in ("d_yes_rate", "d_logit_diff"):
            for stat in ("min", "max", "mean"):
                claim(f"order causal {fmt} random: {k} {stat}", f, ORDER_CAUSAL, k, q, stat, "{:+.2f}")


NULLS = f"{D}/nulls_smollm2_strategyqa-test64_zero_after"
NULLS_CMD = ("python experiments/headset_nulls.py --n 64 --rank-n 100 --sets 100 "
             "--out figures/data/nulls_smollm2_strategyqa-test64_zero_after")
SWEEP = f"{D}/sweep_smollm2_strategyqa-test200_zero_after"
SWEEP_RUN = ("nasa-lens sweep --data strategyqa --split test --limit 200 --mode zero --positions after "
             "--out figures/data/sweep_smollm2_strategyqa-test200_zero_after")
ATTR = f"{D}/sweep_smollm2_strategyqa-test200_attribution"
ATTR_RUN = ("nasa-lens sweep --data strategyqa --split test --limit 200 --mode zero --positions after --method attribution "
            "--no-png --out figures/data/sweep_smollm2_strategyqa-test200_attribution")
SWEEP_CMD = ("python experiments/sweep_scores.py --sweep figures/data/sweep_smollm2_strategyqa-test200_zero_after "
             "--nas figures/data/scans/smollm2-135m-instruct_strategyqa-test200_yes-no/nas.csv "
             "--attribution figures/data/sweep_smollm2_strategyqa-test200_attribution/effects.csv")


def null_claims() -> None:
    """Head-level nulls: the top-k NAS set among 100 random sets of k heads (issue #20 item 3)."""
    f = f"{NULLS}/null_summary.csv"
    claim("nulls: random sets per k", f, NULLS_CMD, "n_random", "k == 1", "value", "{:.0f}")
    claim("nulls: test questions", f"{NULLS}/null.csv", NULLS_CMD, "n", "k == 1 and set == 'nas'", "value", "{:.0f}")
    for k in (1, 2, 4, 8, 16):
        q = f"k == {k}"
        for col, fmt in (("nas_yes_rate_delta", "{:+.3f}"), ("random_yes_rate_delta_mean", "{:+.3f}"),
                         ("random_yes_rate_delta_hi", "{:+.3f}"), ("p_yes_rate_delta", "{:.3f}"),
                         ("nas_mean_effect", "{:+.3f}"), ("p_mean_effect", "{:.3f}")):
            claim(f"nulls k={k}: {col}", f, NULLS_CMD, col, q, "value", fmt)


def sweep_claims() -> None:
    """The exact single-head sweep on 200 StrategyQA test questions, and NAS against it (issue #20 item 2)."""
    claim("sweep: heads", f"{SWEEP}/effects.csv", SWEEP_RUN, "layer", "", "count", "{:.0f}")  # listed first: run first
    claim("sweep: questions", f"{SWEEP}/effects.csv", SWEEP_RUN, "n", "layer == 0 and head == 0", "value", "{:.0f}")
    claim("attribution sweep: heads", f"{ATTR}/effects.csv", ATTR_RUN, "layer", "", "count", "{:.0f}")
    f = f"{SWEEP}/sweep_vs_scores.csv"
    for r in (1, 2, 3):
        claim(f"sweep: rank {r} head", f, SWEEP_CMD, "", f"rank_effect == {r}", "head", "head")
        claim(f"sweep: rank {r} effect", f, SWEEP_CMD, "effect_mean", f"rank_effect == {r}", "value", "{:+.2f}")
    claim("sweep: NAS rank 1 head's effect rank", f, SWEEP_CMD, "rank_effect", "layer == 16 and head == 0", "value", "{:.0f}")
    claim("sweep: Spearman effect vs NAS", f, SWEEP_CMD, "effect_mean", "", "spearman:nas_mean", "{:+.2f}")
    claim("sweep: Spearman effect vs attribution", f, SWEEP_CMD, "effect_mean", "", "spearman:attribution", "{:+.2f}")


def build() -> None:
    for m in (SMOL, GEMMA):
        bias_claims(m, SQA)
        nas_claims(m, SQA)
        folder, cmd = scan(m, SQA, "no-yes")  # the order control's second scan (its table comes from evidence_tables)
        claim(f"{m} {SQA} no-yes: heads scanned", f"{folder}/nas.csv", cmd, "layer", "", "count", "{:.0f}")
        claim(f"{m} {SQA} no-yes: yes_rate (metric)", f"{folder}/predictions.csv", cmd, "yes_rate", "", "metric", "{:.3f}")
    for method in ("base", "threshold", "nasa", "random"):
        fix_claims("s0", method, 0)
    for seed in (1, 2):
        for method in ("nasa", "random"):
            fix_claims("s12", method, seed)
    for method in ("nasa-lambda0.1", "nasa-lambda1"):
        fix_claims("lambda", method, 0)
    for method in ("base", "threshold"):
        fix_claims("gemma", method, 0)
    for method in ("nasa", "random"):
        fix_claims("gemma_nasa", method, 0)
    for method in ("nasa", "random"):
        across_seeds(method)
    for m in (SMOL, GEMMA):
        order_claims(m)
    order_causal_claims()
    null_claims()
    if (ROOT / SWEEP / "sweep_vs_scores.csv").exists():
        sweep_claims()
    claim("make results: minutes", f"{D}/runtimes.csv", TABLES, "minutes", "", "sum", "{:.0f}")


def main() -> int:
    spec = importlib.util.spec_from_file_location("test_evidence", ROOT / "tests" / "integration" / "test_evidence.py")
    te = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(te)
    build()
    rows = []
    for c in CLAIMS:
        if not (ROOT / c["file"]).is_file():
            print(f"skipped (no file yet): {c['claim']} ({c['file']})")
            continue
        try:
            x = te.recompute(c)
        except (AssertionError, KeyError) as exc:
            print(f"skipped (cannot recompute: {exc}): {c['claim']}")
            continue
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
