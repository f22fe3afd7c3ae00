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
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
D = "figures/data"
SQA = "strategyqa-test200"
LK = "lookup-d1-test200"
SMOL, GEMMA = "smollm2-135m-instruct", "gemma3-270m"
SCAN = "python experiments/model_scan.py --threads 1 --model {m} --data {d} --split test --limit 200{f} --out {out}"
TABLES = "python experiments/evidence_tables.py"
_B = 'python experiments/debias_lookup.py --threads 1 --steps 10 --extra ""'
DEBIAS = {"s0": f"{_B} --seeds 0 --lambdas 0 --out figures/data/debias_smollm2_lookup_s0",
          "s12": f'{_B} --once "" --seeds 1 2 --lambdas 0 --out figures/data/debias_smollm2_lookup_s12',
          "lambda": f"{_B} --seeds 0 --lambdas 0.1 1 --no-random --out figures/data/debias_smollm2_lookup_lambda",
          "gemma": ('python experiments/debias_lookup.py --threads 1 --model gemma3-270m --once base,threshold --lambdas --no-random '
                    '--extra "" --seeds 0 --out figures/data/debias_gemma3-270m_lookup'),
          "gemma_nasa": (f'{_B} --model gemma3-270m --once "" --seeds 0 --lambdas 0 '
                         '--out figures/data/debias_gemma3-270m_lookup_nasa')}
_C = "python experiments/debias_lookup.py --threads 1 --steps 30"
DEBIAS["steps30"] = (f"{_C} --seeds 0 1 2 --lambdas 0 --extra knockout,steer,random-knockout "
                     "--out figures/data/debias_smollm2_lookup_steps30")
DEBIAS["steps30_lambda"] = (f"{_C} --once '' --no-random --extra '' --seeds 0 1 2 --lambdas 0.1 1 "
                            "--out figures/data/debias_smollm2_lookup_steps30_lambda")
DEBIAS["cross"] = (f"{_C} --train strategyqa --tests strategyqa,boolq,gsm8k-verify --seeds 0 1 2 --lambdas 0 "
                   "--extra knockout,steer --out figures/data/debias_smollm2_strategyqa_cross")
FOLDER = {"s0": "debias_smollm2_lookup_s0", "s12": "debias_smollm2_lookup_s12", "lambda": "debias_smollm2_lookup_lambda",
          "gemma": "debias_gemma3-270m_lookup", "gemma_nasa": "debias_gemma3-270m_lookup_nasa",
          "steps30": "debias_smollm2_lookup_steps30", "steps30_lambda": "debias_smollm2_lookup_steps30_lambda",
          "cross": "debias_smollm2_strategyqa_cross"}
for _s in (0, 1, 2):  # the random-head control of the cross-domain knockout: knockout (k fitted) and as many random heads
    DEBIAS[f"randko_s{_s}"] = (f"{_C} --train strategyqa --once '' --lambdas --no-random --extra knockout,random-knockout "
                               f"--seeds {_s} --out figures/data/debias_smollm2_strategyqa_randko_s{_s}")
    FOLDER[f"randko_s{_s}"] = f"debias_smollm2_strategyqa_randko_s{_s}"
for _s in (0, 1, 2):  # NASA at NASAConfig's default step count, the three lambda_nas arms, one folder per seed
    DEBIAS[f"steps150_s{_s}"] = (f"python experiments/debias_lookup.py --threads 1 --steps 150 --once '' --no-random "
                                 f"--extra '' --seeds {_s} --lambdas 0 0.1 1 --out figures/data/debias_smollm2_lookup_steps150_s{_s}")
    FOLDER[f"steps150_s{_s}"] = f"debias_smollm2_lookup_steps150_s{_s}"
DEBIAS["gemma_nasa_s12"] = (f'{_B} --model gemma3-270m --once "" --seeds 1 2 --lambdas 0 '
                            '--out figures/data/debias_gemma3-270m_lookup_nasa_s12')
FOLDER["gemma_nasa_s12"] = "debias_gemma3-270m_lookup_nasa_s12"
NASA_ARMS = ("nasa", "nasa-lambda0.1", "nasa-lambda1", "random")
CROSS_SETS = ("lookup-d1-test", "strategyqa-test", "boolq-test", "gsm8k-verify-test")


def scan(m: str, n: str, fmt: str = "yes-no") -> tuple[str, str]:
    d = {"strategyqa-test200": "strategyqa", "lookup-d1-test200": "lookup:d1"}[n]
    f = "" if fmt == "yes-no" else f" --format {fmt}"
    out = f"{D}/scans/{m}_{n}_{fmt}"
    return out, SCAN.format(m=m, d=d, f=f, out=out)


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


def fix_claims(run: str, method: str, seed: int, metrics=("accuracy", "yes_rate", "auroc", "pr_gap", "recall", "precision"),
               dataset: str | None = None) -> None:
    f = f"{D}/{FOLDER[run]}/comparison.csv"
    q = f"method == '{method}' and seed == {seed}" + (f" and dataset == '{dataset}'" if dataset else "")
    run = run if dataset is None else f"{run} {dataset}"
    claim(f"{run} {method} seed {seed}: n", f, DEBIAS[run.split()[0]], "n", q, "value", "{:.0f}")
    for k in metrics:
        for suffix in ("", "_lo", "_hi"):
            claim(f"{run} {method} seed {seed}: {k}{suffix}", f, DEBIAS[run.split()[0]], k + suffix, q, "value",
                  "{:.3f}")
    claim(f"{run} {method} seed {seed}: lm_loss", f, DEBIAS[run.split()[0]], "lm_loss", q, "value", "{:.3f}")
    if method == "threshold":
        claim(f"{run} threshold fitted", f, DEBIAS[run.split()[0]], "threshold", q, "value", "{:.3f}")
    if method.startswith(("nasa", "random")) and method != "random-knockout":
        claim(f"{run} {method} seed {seed}: steps", f, DEBIAS[run.split()[0]], "steps", q, "value", "{:.0f}")


def paired_claims(run: str, a: tuple[str, int], b: tuple[str, int], dataset: str = "lookup-d1-test",
                  metric: str = "accuracy", b_run: str | None = None) -> None:
    """Fix ``a`` minus fix ``b`` (each ``(method, seed)``) on the same questions, paired bootstrap; with ``b_run``,
    ``b`` comes from that run (both read from the runs' combined ``predictions.csv.gz``)."""
    if b_run is None:
        f, cmd = f"{D}/{FOLDER[run]}/predictions.csv.gz", DEBIAS[run]
        q = " ;; ".join(f"method == '{m}' and seed == {s} and dataset == '{dataset}'" for m, s in (a, b))
    else:
        f, cmd = f"{D}/predictions.csv.gz", TABLES
        q = " ;; ".join(f"run == '{FOLDER[r]}' and method == '{m}' and seed == {s} and dataset == '{dataset}'"
                        for r, (m, s) in ((run, a), (b_run, b)))
    name = f"{run} {dataset}: {a[0]} s{a[1]} - {b_run or run} {b[0]} s{b[1]} {metric}"
    for stat, fmt in (("paired", "{:+.3f}"), ("paired_lo", "{:+.3f}"), ("paired_hi", "{:+.3f}"), ("paired_p", "{:.3f}")):
        claim(f"{name} ({stat})", f, cmd, metric, q, stat, fmt)


def debias_claims() -> None:
    """The 30-step in-domain comparison (NASA on top-NAS and on random heads with three seeds, the other fixes,
    paired differences), its ``lambda_nas`` arms (three seeds each) and the cross-domain rows (StrategyQA train ->
    four test sets)."""
    for method in ("base", "threshold", "knockout", "steer", "random-knockout"):
        fix_claims("steps30", method, 0)
    for seed in (0, 1, 2):
        for method in ("nasa", "random"):
            fix_claims("steps30", method, seed, metrics=("accuracy", "yes_rate", "auroc"))
            paired_claims("steps30", (method, seed), ("threshold", 0))
        paired_claims("steps30", ("nasa", seed), ("random", seed))
        for method in NASA_ARMS[1:3]:
            fix_claims("steps30_lambda", method, seed, metrics=("accuracy", "yes_rate", "auroc"))
            paired_claims("steps30_lambda", (method, seed), ("nasa", seed), b_run="steps30")
    for method in ("knockout", "steer", "random-knockout"):
        paired_claims("steps30", (method, 0), ("threshold", 0))
    for method in ("nasa", "random"):
        across_seeds(method, runs=("steps30",), tag="steps30 ")
    for method in NASA_ARMS[1:3]:
        across_seeds(method, runs=("steps30_lambda",), tag="steps30 lambda ")
    for ds in CROSS_SETS:
        for method in ("base", "threshold", "knockout", "steer"):
            fix_claims("cross", method, 0, metrics=("accuracy", "yes_rate", "auroc", "pr_gap"), dataset=ds)
        for method in ("nasa", "random"):
            across_seeds(method, runs=("cross",), dataset=ds, tag=f"cross {ds} ")
            for seed in (0, 1, 2):
                fix_claims("cross", method, seed, metrics=("accuracy", "yes_rate", "auroc", "pr_gap"), dataset=ds)
                paired_claims("cross", (method, seed), ("threshold", 0), dataset=ds)
                paired_claims("cross", (method, seed), ("base", 0), dataset=ds)
            paired_claims("cross", ("nasa", 0), ("random", 0), dataset=ds)
        paired_claims("cross", ("knockout", 0), ("base", 0), dataset=ds)
    for seed in (0, 1, 2):
        fix_claims(f"randko_s{seed}", "random-knockout", seed, metrics=("accuracy", "yes_rate", "auroc"))
        fix_claims(f"randko_s{seed}", "knockout", seed, metrics=("accuracy",))
        paired_claims(f"randko_s{seed}", ("knockout", seed), ("random-knockout", seed))
    across_seeds("random-knockout", runs=("randko_s0", "randko_s1", "randko_s2"), tag="cross lookup ")
    paired_claims("cross", ("knockout", 0), ("threshold", 0), b_run="steps30")  # against the in-domain threshold
    paired_claims("cross", ("knockout", 0), ("knockout", 0), b_run="steps30")  # against knockout fitted in-domain


def steps150_claims() -> None:
    """NASA at 150 steps (``NASAConfig``'s default) on ``lookup``, ``lambda_nas`` 0, 0.1 and 1, three seeds: each arm
    against the in-domain threshold and against the same seed without the term, and the means over seeds."""
    for seed in (0, 1, 2):
        run = f"steps150_s{seed}"
        for method in NASA_ARMS[:3]:
            fix_claims(run, method, seed, metrics=("accuracy", "yes_rate", "auroc"))
            paired_claims(run, (method, seed), ("threshold", 0), b_run="steps30")
            paired_claims(run, (method, seed), ("nasa", seed), b_run="steps30")  # 150 steps against 30
        for method in NASA_ARMS[1:3]:
            paired_claims(run, (method, seed), ("nasa", seed))
    for method in NASA_ARMS[:3]:
        across_seeds(method, runs=("steps150_s0", "steps150_s1", "steps150_s2"), tag="steps150 ")


def gemma_extra_claims() -> None:
    """Gemma 3 270M: NASA (top-NAS and random heads) with seeds 1 and 2 beside seed 0, on ``lookup``; the heads
    that carry the instruction's "No" into the answer (DLA on the StrategyQA test questions)."""
    dla = f"{GEMMA_DLA}/dla.csv"
    for r in (1, 2, 3):
        q = f"via_no.rank() == {r}"
        claim(f"gemma dla: via_no rank {r} head", dla, GEMMA_DLA_RUN, "", q, "head", "head")
        claim(f"gemma dla: via_no rank {r}", dla, GEMMA_DLA_RUN, "via_no", q, "value", "{:+.3f}")
    claim("gemma dla: via_no summed over the heads", dla, GEMMA_DLA_RUN, "via_no", "", "sum", "{:+.3f}")
    claim("gemma dla: via_yes summed over the heads", dla, GEMMA_DLA_RUN, "via_yes", "", "sum", "{:+.3f}")
    claim("gemma dla: direct effect summed over the heads", dla, GEMMA_DLA_RUN, "dla_mean", "", "sum", "{:+.3f}")
    claim("gemma dla: top-NAS head 1.0 via_no", dla, GEMMA_DLA_RUN, "via_no", "layer == 1 and head == 0", "value", "{:+.3f}")
    for seed in (1, 2):
        for method in ("nasa", "random"):
            fix_claims("gemma_nasa_s12", method, seed, metrics=("accuracy", "yes_rate", "auroc"))
    for method in ("nasa", "random"):
        across_seeds(method, model=GEMMA, runs=("gemma_nasa", "gemma_nasa_s12"), tag="gemma ")
    for seed in (1, 2):  # (the seed-0 run kept no per-question predictions)
        paired_claims("gemma_nasa_s12", ("nasa", seed), ("random", seed))


def across_seeds(method: str, model: str = SMOL, runs: tuple[str, ...] = ("s0", "s12"), dataset: str = "lookup-d1-test",
                 tag: str = "") -> None:
    f = f"{D}/comparison.csv"
    folders = [FOLDER[r] for r in runs]
    q = f"method == '{method}' and model == '{model}' and run in {folders} and dataset == '{dataset}'"
    claim(f"{tag}{method}: seeds", f, TABLES, "seed", q, "nunique", "{:.0f}")
    for k in ("accuracy", "yes_rate", "auroc", "recall"):
        for stat in ("mean", "min", "max"):
            claim(f"{tag}{method}: {k} {stat} over seeds", f, TABLES, k, q, stat, "{:.3f}")


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


ORDER_CAUSAL = {"": ("order_causal_smollm2", "python experiments/order_causal.py --limit 100 --n-random 6 "
                                                "--out figures/data/order_causal_smollm2"),
                "n200 ": ("order_causal_smollm2_n200", "python experiments/order_causal.py --limit 200 --n-random 20 --threads 1 "
                                                       "--out figures/data/order_causal_smollm2_n200")}


def order_causal_claims(tag: str = "") -> None:
    """The order-independent "No" heads zero-ablated in both prompt orders, against random sets of as many heads;
    ``null_p``: the share of random sets (plus one) whose ablation raises ``logit(Yes) - logit(No)`` (or, with
    ``null_p_le``, lowers it) at least as much."""
    folder, cmd = ORDER_CAUSAL[tag]
    f = f"{D}/{folder}/effects.csv"
    for fmt in ("yes-no", "no-yes"):
        for st in ("none", "no-both", "second", "random0", "random1"):
            q = f"format == '{fmt}' and set == '{st}'"
            claim(f"order causal {tag}{fmt} {st}: n", f, cmd, "n", q, "value", "{:.0f}")
            claim(f"order causal {tag}{fmt} {st}: yes_rate", f, cmd, "yes_rate", q, "value", "{:.2f}")
            for k in ("d_yes_rate", "d_logit_diff"):
                for suffix in ("", "_lo", "_hi"):
                    claim(f"order causal {tag}{fmt} {st}: {k}{suffix}", f, cmd, k + suffix, q, "value", "{:+.2f}")
        rnd = f"format == '{fmt}' and set not in ['none', 'no-both', 'second']"
        claim(f"order causal {tag}{fmt} random: sets", f, cmd, "set", rnd, "nunique", "{:.0f}")
        for k in ("d_yes_rate", "d_logit_diff"):
            for stat in ("min", "max", "mean"):
                claim(f"order causal {tag}{fmt} random: {k} {stat}", f, cmd, k, rnd, stat, "{:+.2f}")
            for st in ("no-both", "second"):
                for stat in ("null_p", "null_p_le"):
                    claim(f"order causal {tag}{fmt} {st} among random: {k} {stat}", f, cmd, k,
                          f"format == '{fmt}' and set == '{st}' ;; {rnd}", stat, "{:.3f}")


NULLS = f"{D}/nulls_smollm2_strategyqa-test64_zero_after"
NULLS_CMD = ("python experiments/headset_nulls.py --n 64 --rank-n 100 --sets 100 "
             "--out figures/data/nulls_smollm2_strategyqa-test64_zero_after")
NULL_RUNS = {"zero": (NULLS, NULLS_CMD),
             "mean": (f"{D}/nulls_smollm2_strategyqa-test64_mean_after",
                      "python experiments/headset_nulls.py --n 64 --rank-n 100 --sets 100 --mode mean "
                      "--out figures/data/nulls_smollm2_strategyqa-test64_mean_after"),
             "gemma": (f"{D}/nulls_gemma3-270m_strategyqa-test64_zero_after",
                       "python experiments/headset_nulls.py --model gemma3-270m --n 64 --rank-n 100 --sets 100 "
                       "--out figures/data/nulls_gemma3-270m_strategyqa-test64_zero_after")}
SWEEP = f"{D}/sweep_smollm2_strategyqa-test200_zero_after"
SWEEP_RUN = ("nasa-lens sweep --data strategyqa --split test --limit 200 --mode zero --positions after "
             "--out figures/data/sweep_smollm2_strategyqa-test200_zero_after")
ATTR = f"{D}/sweep_smollm2_strategyqa-test200_attribution"
ATTR_RUN = ("nasa-lens sweep --data strategyqa --split test --limit 200 --mode zero --positions after --method attribution "
            "--no-png --out figures/data/sweep_smollm2_strategyqa-test200_attribution")
DLA = f"{D}/dla_smollm2_strategyqa-test200"
DLA_RUN = "nasa-lens dla --data strategyqa --split test --limit 200 --no-png --out figures/data/dla_smollm2_strategyqa-test200"
SMOL_SCAN = "figures/data/scans/smollm2-135m-instruct_strategyqa-test200_yes-no"
GEMMA_SCAN = "figures/data/scans/gemma3-270m_strategyqa-test200_yes-no"
GEMMA_DLA = f"{D}/dla_gemma3-270m_strategyqa-test200"
GEMMA_DLA_RUN = ("nasa-lens dla --model gemma3-270m --data strategyqa --split test --limit 200 --no-png "
                 "--out figures/data/dla_gemma3-270m_strategyqa-test200")


def sweep_entry(name: str, flags: str, scores: tuple[str, ...], extra: str = "", nas: str = SMOL_SCAN,
                run: str | None = None) -> tuple[str, str, str, tuple[str, ...]]:
    """``(folder, the sweep's command, the scores' command, scores)`` of the sweep written to ``figures/data/NAME``
    (``run``: the sweep's command when it is not ``nasa-lens sweep FLAGS --out figures/data/NAME``)."""
    out = f"figures/data/{name}"
    return (f"{D}/{name}", run or f"nasa-lens sweep {flags} --out {out}",
            f"python experiments/sweep_scores.py --sweep {out} --nas {nas}{extra}", scores)


_Q = "--data strategyqa --split test"
_DLA = f" --dla {DLA}"
# The exact single-head sweeps (issue #20 item 2): name -> (folder, the sweep's command, the scores' command, scores)
SWEEPS = {
    "zero": sweep_entry("sweep_smollm2_strategyqa-test200_zero_after", "", ("nas", "attribution", "dla_via_no", "dla_total"),
                        f"{_DLA} --attribution {ATTR}", run=SWEEP_RUN),
    "mean": sweep_entry("sweep_smollm2_strategyqa-test200_mean_after", f"{_Q} --limit 200 --mode mean --positions after --no-png",
                        ("nas", "dla_via_no", "dla_total", "other_effect"), f"{_DLA} --other {SWEEP}"),
    "all": sweep_entry("sweep_smollm2_strategyqa-test64_zero_all", f"{_Q} --limit 64 --mode zero --positions all --no-png",
                       ("nas", "dla_via_no", "dla_total", "other_effect"), f"{_DLA} --other {SWEEP}"),
    "no-yes": sweep_entry("sweep_smollm2_strategyqa-test64_zero_after_no-yes",
                          f"{_Q} --limit 64 --mode zero --positions after --format no-yes --no-png", ("nas", "other_effect"),
                          f" --other {SWEEP}", nas=f"{D}/scans/smollm2-135m-instruct_strategyqa-test200_no-yes"),
    "gemma": sweep_entry("sweep_gemma3-270m_strategyqa-test200_zero_after",
                         f"--model gemma3-270m {_Q} --limit 200 --mode zero --positions after --no-png",
                         ("nas", "dla_via_no", "dla_total"), f" --dla {GEMMA_DLA}", nas=GEMMA_SCAN),
    "gemma mean": sweep_entry("sweep_gemma3-270m_strategyqa-test200_mean_after",
                              f"--model gemma3-270m {_Q} --limit 200 --mode mean --positions after --no-png",
                              ("nas", "dla_via_no", "dla_total", "other_effect"),
                              f" --dla {GEMMA_DLA} --other {D}/sweep_gemma3-270m_strategyqa-test200_zero_after",
                              nas=GEMMA_SCAN),
}
SWEEP_TOP_NAS = {"gemma": (1, 0), "gemma mean": (1, 0)}  # the top-NAS head of each sweep's model (SmolLM2: 16.0)


def null_claims(mode: str = "zero") -> None:
    """Head-level nulls: the top-k NAS set among 100 random sets of k heads (issue #20 item 3); the p-values are
    recomputed from the sets themselves (``null_p``), the rest read from the summary."""
    folder, cmd = NULL_RUNS[mode]
    tag = "nulls" if mode == "zero" else f"nulls {mode}"
    f = f"{folder}/null_summary.csv"
    claim(f"{tag}: random sets per k", f, cmd, "n_random", "k == 1", "value", "{:.0f}")
    claim(f"{tag}: test questions", f"{folder}/null.csv", cmd, "n", "k == 1 and set == 'nas'", "value", "{:.0f}")
    for k in (1, 2, 4, 8, 16):
        q = f"k == {k}"
        for col in ("nas_yes_rate_delta", "random_yes_rate_delta_mean", "random_yes_rate_delta_lo",
                    "random_yes_rate_delta_hi", "nas_mean_effect", "random_mean_effect_mean", "random_mean_effect_lo",
                    "random_mean_effect_hi"):
            claim(f"{tag} k={k}: {col}", f, cmd, col, q, "value", "{:+.3f}")
        sets = f"k == {k} and set == 'nas' ;; k == {k} and set != 'nas'"
        for col in ("yes_rate_delta", "mean_effect"):
            claim(f"{tag} k={k}: p_{col}", f"{folder}/null.csv", cmd, col, sets, "null_p", "{:.3f}")
        # towards "No" as well: what matters on a model that already says "Yes" to everything
        claim(f"{tag} k={k}: p_le_mean_effect", f"{folder}/null.csv", cmd, "mean_effect", sets, "null_p_le", "{:.3f}")


def sweep_claims() -> None:
    """The exact single-head sweeps on StrategyQA test questions, and NAS, DLA and attribution against them, with
    bootstrap intervals over questions (issue #20 item 2)."""
    claim("dla: heads", f"{DLA}/dla.csv", DLA_RUN, "layer", "", "count", "{:.0f}")  # listed first: run first
    claim("attribution sweep: heads", f"{ATTR}/effects.csv", ATTR_RUN, "layer", "", "count", "{:.0f}")
    claim("gemma dla: heads", f"{GEMMA_DLA}/dla.csv", GEMMA_DLA_RUN, "layer", "", "count", "{:.0f}")
    for name, (folder, run, scores, score_names) in SWEEPS.items():
        if not (ROOT / folder / "spearman.csv").exists():
            continue
        claim(f"sweep {name}: heads", f"{folder}/effects.csv", run, "layer", "", "count", "{:.0f}")
        claim(f"sweep {name}: questions", f"{folder}/effects.csv", run, "n", "layer == 0 and head == 0", "value", "{:.0f}")
        f = f"{folder}/sweep_vs_scores.csv"
        fmt = "{:+.4f}" if name.endswith("mean") else "{:+.2f}"  # mean-ablation effects are small
        for r in (1, 2, 3):
            claim(f"sweep {name}: rank {r} head", f, scores, "", f"rank_effect == {r}", "head", "head")
            claim(f"sweep {name}: rank {r} effect", f, scores, "effect_mean", f"rank_effect == {r}", "value", fmt)
        top = "layer == {} and head == {}".format(*SWEEP_TOP_NAS.get(name, (16, 0)))
        claim(f"sweep {name}: NAS rank 1 head's effect rank", f, scores, "rank_effect", top, "value", "{:.0f}")
        claim(f"sweep {name}: NAS rank 1 head's effect", f, scores, "effect_mean", top, "value", fmt)
        claim(f"sweep {name}: largest effect", f, scores, "effect_mean", "", "max", fmt)
        claim(f"sweep {name}: most negative effect", f, scores, "effect_mean", "", "min", fmt)
        f = f"{folder}/scores_by_example.csv.gz"
        claim(f"sweep {name}: questions shared with the scores", f, scores, "id", "", "nunique", "{:.0f}")
        for score in score_names:
            for stat in ("spearman_q", "spearman_q_lo", "spearman_q_hi"):
                claim(f"sweep {name}: {stat} effect vs {score}", f, scores, "effect", "", f"{stat}:{score}", "{:+.3f}")


COND = f"{D}/scans/conditions"


def cond_scan(cond: str, data: str, flags: str = "") -> tuple[str, str]:
    """``(folder, command)`` of a docs/nas.md scan of SmolLM2 beyond the default one (``scans/conditions/``)."""
    out = f"{COND}/{SMOL}_{cond}"
    return out, SCAN.format(m=SMOL, d=data, f=flags, out=out)


COND_SCANS = {  # condition -> (folder, the command that wrote it)
    "strategyqa-test200_yes-no_last": cond_scan("strategyqa-test200_yes-no_last", "strategyqa", " --positions last"),
    "gsm8k-verify-test200_yes-no": cond_scan("gsm8k-verify-test200_yes-no", "gsm8k-verify"),
    "strategyqa-test200_true-false": cond_scan("strategyqa-test200_true-false", "strategyqa", " --format true-false"),
}


def nas_page_claims() -> None:
    """docs/nas.md's findings: the top-10 NAS heads of SmolLM2 on 200 StrategyQA test questions (after the
    candidates and at the last position), and how the ranking moves with the data and the candidate words."""
    folder, cmd = scan(SMOL, SQA)
    last, last_cmd = COND_SCANS["strategyqa-test200_yes-no_last"]
    for tag, f, c in (("after", f"{folder}/nas.csv", cmd), ("last", f"{last}/nas.csv", last_cmd)):
        claim(f"nas page {tag}: questions", f, c, "n", "rank == 1", "value", "{:.0f}")
        claim(f"nas page {tag}: largest stderr", f, c, "nas_stderr", "", "max", "{:.2f}")
        for r in range(1, 11):
            claim(f"nas page {tag}: rank {r}", f, c, "rank", f"rank == {r}", "value", "{:.0f}")
            claim(f"nas page {tag}: rank {r} head", f, c, "", f"rank == {r}", "head", "head")
            claim(f"nas page {tag}: rank {r} mean NAS", f, c, "nas_mean", f"rank == {r}", "value", "{:.3f}")
    f = f"{D}/nas_conditions_{SMOL}.csv"
    base = "nas_strategyqa-test200_yes-no"
    for cond in ("strategyqa-test200_yes-no_last", "gsm8k-verify-test200_yes-no", "strategyqa-test200_true-false",
                 "strategyqa-test200_no-yes"):
        claim(f"nas page: Pearson default vs {cond}", f, TABLES, base, "", f"pearson:nas_{cond}", "{:+.2f}")
        claim(f"nas page: Spearman default vs {cond}", f, TABLES, base, "", f"spearman:nas_{cond}", "{:+.2f}")
        claim(f"nas page: top-10 shared, default and {cond}", f, TABLES, "layer",
              f"`rank_strategyqa-test200_yes-no` <= 10 and `rank_{cond}` <= 10", "count", "{:.0f}")
    for cond in ("gsm8k-verify-test200_yes-no", "strategyqa-test200_true-false"):
        folder, c = COND_SCANS[cond]
        for k in ("yes_rate", "auroc"):
            for stat in ("metric", "metric_lo", "metric_hi"):
                claim(f"nas page {cond}: {k} ({stat})", f"{folder}/predictions.csv", c, k, "", stat, "{:.3f}")
        claim(f"nas page {cond}: rank 1 head", f"{folder}/nas.csv", c, "", "rank == 1", "head", "head")
        claim(f"nas page {cond}: rank 1 mean NAS", f"{folder}/nas.csv", c, "nas_mean", "rank == 1", "value", "{:.2f}")


def docs_mechanism_causal_claims() -> None:
    """docs/mechanism.md's and docs/causal.md's findings: the direct logit attribution split by source on 200
    StrategyQA test questions (most negative ``via_no`` first, the largest ``via_no`` and the largest total), the
    zero and mean sweeps of the suffix beside it (NAS, DLA, attribution, per head, selected by rank so that no head
    is named by hand), Spearman of the scores in the late layers, and the random range of the head-set nulls."""
    dla, comp = f"{DLA}/dla.csv", f"{DLA}/components.csv"
    zf, _, zsc, _ = SWEEPS["zero"]
    mf, _, msc, _ = SWEEPS["mean"]
    zs, ms, zq = f"{zf}/sweep_vs_scores.csv", f"{mf}/sweep_vs_scores.csv", f"{zf}/scores_by_example.csv.gz"
    claim("dla: questions", dla, DLA_RUN, "n", "layer == 0 and head == 0", "value", "{:.0f}")
    claim("dla: largest stderr of a head's DLA total", dla, DLA_RUN, "dla_stderr", "", "max", "{:.3f}")
    for c in ("logit_diff", "heads", "mlp26", "mlp29"):
        claim(f"dla: component {c}", comp, DLA_RUN, "dla_mean", f"component == '{c}'", "value", "{:+.3f}")
    for col in ("via_no", "via_yes", "via_other", "dla_mean"):
        claim(f"dla: {col} summed over heads", dla, DLA_RUN, col, "", "sum", "{:+.3f}")
    claim("dla: via_no summed over the heads with a negative via_no", dla, DLA_RUN, "via_no", "via_no < 0", "sum", "{:+.3f}")
    claim("dla: component logit_diff stderr", comp, DLA_RUN, "dla_stderr", "component == 'logit_diff'", "value", "{:.3f}")
    # DLA table rows: (tag, the row in dla.csv, the same head in the sweeps' files)
    rows = [(f"via_no rank {r}", f"via_no.rank() == {r}", f"dla_via_no.rank() == {r}") for r in range(1, 6)]
    rows += [("largest via_no", "via_no.rank(ascending=False) == 1", "dla_via_no.rank(ascending=False) == 1"),
             ("largest DLA total", "dla_mean.rank(ascending=False) == 1", "dla_total.rank(ascending=False) == 1")]
    for tag, q, qs in rows:
        claim(f"dla {tag}: head", dla, DLA_RUN, "", q, "head", "head")
        for col in ("via_no", "via_yes", "via_other", "dla_mean"):
            claim(f"dla {tag}: {col}", dla, DLA_RUN, col, q, "value", "{:+.3f}")
        claim(f"dla {tag}: head (sweep)", zs, zsc, "", qs, "head", "head")
        claim(f"dla {tag}: NAS", zs, zsc, "nas_mean", qs, "value", "{:.2f}")
        claim(f"dla {tag}: zero-sweep effect", zs, zsc, "effect_mean", qs, "value", "{:+.2f}")
        claim(f"dla {tag}: zero-sweep effect stderr", zs, zsc, "effect_stderr", qs, "value", "{:.3f}")
        claim(f"dla {tag}: zero-sweep effect rank", zs, zsc, "rank_effect", qs, "value", "{:.0f}")
        claim(f"dla {tag}: head (mean sweep)", ms, msc, "", qs, "head", "head")
        claim(f"dla {tag}: mean-sweep effect", ms, msc, "effect_mean", qs, "value", "{:+.3f}")
        claim(f"dla {tag}: mean-sweep effect stderr", ms, msc, "effect_stderr", qs, "value", "{:.3f}")
        claim(f"dla {tag}: mean-sweep effect rank", ms, msc, "rank_effect", qs, "value", "{:.0f}")
    top5 = "nas_mean.rank(ascending=False) <= 5"
    for stat in ("min", "max"):
        claim(f"dla: via_no of the five highest-NAS heads ({stat})", zs, zsc, "dla_via_no", top5, stat, "{:.3f}")
    for other in ("dla_via_no", "dla_total"):
        for stat in ("spearman_q", "spearman_q_lo", "spearman_q_hi"):
            claim(f"dla: {stat} nas vs {other}", zq, zsc, "nas", "", f"{stat}:{other}", "{:+.3f}")
    # the scores against the exact effect in the late layers and below them
    for tag, q in (("late", "layer >= 20"), ("early", "layer < 20")):
        claim(f"sweep zero {tag} layers: heads", zs, zsc, "layer", q, "count", "{:.0f}")
        for score in ("nas", "dla_via_no", "dla_total", "attribution"):
            for stat in ("spearman_q", "spearman_q_lo", "spearman_q_hi"):
                claim(f"sweep zero {tag} layers: {stat} effect vs {score}", zq, zsc, "effect", q, f"{stat}:{score}",
                      "{:+.3f}")
    # docs/causal.md: exact against attribution, the heads at both ends, the top-NAS heads
    claim("sweep zero: pearson effect vs attribution", zs, zsc, "effect_mean", "", "pearson:attribution", "{:+.3f}")
    for sign, q in (("positive", "effect_mean > 0"), ("negative", "effect_mean < 0")):
        claim(f"sweep zero: heads with a {sign} effect", zs, zsc, "layer", q, "count", "{:.0f}")
        claim(f"sweep zero: top-16 NAS heads with a {sign} effect", zs, zsc, "layer",
              f"nas_mean.rank(ascending=False) <= 16 and {q}", "count", "{:.0f}")
    for r in range(1, 6):  # the five largest effects each way, and attribution's top five with their exact effects
        for tag, q in ((f"rank {r}", f"rank_effect == {r}"), (f"most negative {r}", f"effect_mean.rank() == {r}"),
                       (f"attribution rank {r}", f"attribution.rank(ascending=False) == {r}")):
            claim(f"sweep zero {tag}: head", zs, zsc, "", q, "head", "head")
            claim(f"sweep zero {tag}: effect", zs, zsc, "effect_mean", q, "value", "{:+.2f}")
            claim(f"sweep zero {tag}: attribution", zs, zsc, "attribution", q, "value", "{:+.2f}")
        claim(f"sweep zero attribution rank {r}: effect rank", zs, zsc, "rank_effect",
              f"attribution.rank(ascending=False) == {r}", "value", "{:.0f}")
    for r in range(1, 9):
        q = f"nas_mean.rank(ascending=False) == {r}"
        claim(f"sweep zero NAS rank {r}: head", zs, zsc, "", q, "head", "head")
        claim(f"sweep zero NAS rank {r}: NAS", zs, zsc, "nas_mean", q, "value", "{:.1f}")
        claim(f"sweep zero NAS rank {r}: effect", zs, zsc, "effect_mean", q, "value", "{:+.2f}")
        claim(f"sweep zero NAS rank {r}: effect stderr", zs, zsc, "effect_stderr", q, "value", "{:.3f}")
        claim(f"sweep zero NAS rank {r}: effect rank", zs, zsc, "rank_effect", q, "value", "{:.0f}")
        claim(f"sweep zero NAS rank {r}: attribution", zs, zsc, "attribution", q, "value", "{:+.2f}")
        claim(f"sweep mean NAS rank {r}: head", ms, msc, "", q, "head", "head")
        claim(f"sweep mean NAS rank {r}: effect", ms, msc, "effect_mean", q, "value", "{:+.3f}")
        claim(f"sweep mean NAS rank {r}: effect stderr", ms, msc, "effect_stderr", q, "value", "{:.3f}")
        claim(f"sweep mean NAS rank {r}: effect rank", ms, msc, "rank_effect", q, "value", "{:.0f}")


def whole_prompt_claims() -> None:
    """docs/causal.md: every head zero-ablated at every position against the same head ablated on the suffix only,
    on the questions both sweeps hold (``effect_shared`` and ``other_effect`` of the whole-prompt sweep's
    ``sweep_vs_scores.csv``): by layer range and for the heads where the two differ most."""
    folder, _, scores, _ = SWEEPS["all"]
    f = f"{folder}/sweep_vs_scores.csv"
    for lo, hi in ((0, 4), (5, 19), (20, 28), (29, 29)):
        q = f"layer >= {lo} and layer <= {hi}"
        tag = f"whole vs suffix, layers {lo}-{hi}"
        claim(f"{tag}: mean |effect| whole prompt", f, scores, "effect_shared", q, "mean_abs", "{:.3f}")
        claim(f"{tag}: mean |effect| suffix", f, scores, "other_effect", q, "mean_abs", "{:.3f}")
        claim(f"{tag}: mean |difference|", f, scores, "effect_shared", q, "mean_abs_diff:other_effect", "{:.3f}")
    for r in range(1, 7):
        q = f"(effect_shared - other_effect).abs().rank(ascending=False) == {r}"
        claim(f"whole vs suffix: largest difference {r} head", f, scores, "", q, "head", "head")
        for col in ("effect_shared", "other_effect", "nas_mean"):
            claim(f"whole vs suffix: largest difference {r} {col}", f, scores, col, q, "value", "{:+.2f}")
    for r in range(1, 6):
        q = f"rank_effect == {r}"
        claim(f"sweep all: rank {r} head", f, scores, "", q, "head", "head")
        for col in ("effect_mean", "other_effect"):
            claim(f"sweep all: rank {r} {col}", f, scores, col, q, "value", "{:+.2f}")
    top = "layer == 16 and head == 0"
    claim("sweep all: 16.0 suffix effect", f, scores, "other_effect", top, "value", "{:+.2f}")
    claim("sweep all: 1.2 effect", f, scores, "effect_mean", "layer == 1 and head == 2", "value", "{:+.2f}")
    claim("sweep all: 1.2 effect rank", f, scores, "rank_effect", "layer == 1 and head == 2", "value", "{:.0f}")
    claim("sweep all: 1.2 suffix effect", f, scores, "other_effect", "layer == 1 and head == 2", "value", "{:+.2f}")


DATASET_SCORES = f"{D}/dataset_scores_smollm2_d1_n200.csv"
DATASET_SCORES_RUN = ("python experiments/dataset_scores.py --levels 1 --limit 200 --threads 1 "
                      "--out figures/data/dataset_scores_smollm2_d1_n200.csv")


def dataset_claims() -> None:
    """docs/debias.md: SmolLM2's AUROC, yes-rate and accuracy on every built-in data set (generators at difficulty
    1, the registry sets' test splits), 200 label-balanced questions each."""
    if not (ROOT / DATASET_SCORES).is_file():
        return
    import pandas as pd

    for name in pd.read_csv(ROOT / DATASET_SCORES).dataset:
        q = f"dataset == '{name}'"
        claim(f"datasets {name}: n", DATASET_SCORES, DATASET_SCORES_RUN, "n", q, "value", "{:.0f}")
        for col in ("auroc", "auroc_lo", "auroc_hi", "yes_rate", "accuracy"):
            claim(f"datasets {name}: {col}", DATASET_SCORES, DATASET_SCORES_RUN, col, q, "value", "{:.3f}")
    claim("datasets: reaching AUROC 0.75", DATASET_SCORES, DATASET_SCORES_RUN, "dataset", "auroc >= 0.75", "count", "{:.0f}")
    claim("datasets: yes-rate below one half", DATASET_SCORES, DATASET_SCORES_RUN, "dataset", "yes_rate < 0.5", "count", "{:.0f}")
    claim("datasets: count", DATASET_SCORES, DATASET_SCORES_RUN, "dataset", "", "count", "{:.0f}")


STUDY = f"{D}/study_default"
STUDY_RUN = "python experiments/study_default.py"


def study_claims() -> None:
    """docs/study.md: the default study (``configs/default.toml``): its bias metrics before and after the NASA
    fine-tune on each data set, the changes with their intervals, and the top NAS heads of its scan."""
    f, d = f"{STUDY}/bias_metrics.csv", f"{STUDY}/deltas.csv"
    for ds in ("lookup", "strategyqa", "multistep"):
        for phase in ("before", "after"):
            for metric in ("accuracy", "yes_rate", "auroc"):
                q = f"dataset == '{ds}' and phase == '{phase}' and metric == '{metric}'"
                claim(f"study {ds} {phase}: {metric}", f, STUDY_RUN, "value", q, "value", "{:.3f}")
                if metric == "yes_rate":
                    claim(f"study {ds} {phase}: {metric} (%)", f, STUDY_RUN, "value", q, "value", "{:.0%}")
            claim(f"study {ds} {phase}: n", f, STUDY_RUN, "n", f"dataset == '{ds}' and phase == '{phase}' and metric == 'accuracy'",
                  "value", "{:.0f}")
        for metric in ("accuracy", "yes_rate"):
            q = f"dataset == '{ds}' and metric == '{metric}'"
            for col in ("delta", "ci_low", "ci_high"):
                claim(f"study {ds}: {metric} {col}", d, STUDY_RUN, col, q, "value", "{:+.3f}")
    f = f"{STUDY}/nas_ranking.csv"
    for r in (1, 2, 3):
        claim(f"study NAS rank {r} head", f, STUDY_RUN, "", f"rank == {r}", "head", "head")
        claim(f"study NAS rank {r} mean NAS", f, STUDY_RUN, "nas_mean", f"rank == {r}", "value", "{:.3f}")
    claim("study: train questions scanned", f, STUDY_RUN, "n", "rank == 1", "value", "{:.0f}")


def order_sweep_claims() -> None:
    """The order control's sweep (issue #20 item 4): every head zero-ablated alone on the suffix with "No or Yes",
    beside the same head with "Yes or No" (``other_effect``, on the questions both samples hold): the top-NAS heads
    and the heads that lean to "No" in both orders."""
    folder, _, scores, _ = SWEEPS["no-yes"]
    f = f"{folder}/sweep_vs_scores.csv"
    for layer, head in ((16, 0), (1, 2), (16, 3), (14, 4), (13, 7), (13, 6)):
        q = f"layer == {layer} and head == {head}"
        for col in ("effect_shared", "other_effect"):
            claim(f"sweep no-yes: {layer}.{head} {col}", f, scores, col, q, "value", "{:+.2f}")
        claim(f"sweep no-yes: {layer}.{head} effect rank", f, scores, "rank_effect", q, "value", "{:.0f}")
        claim(f"sweep no-yes: {layer}.{head} NAS (no-yes)", f, scores, "nas_mean", q, "value", "{:+.1f}")
    claim("sweep no-yes: heads whose effect changes sign", f, scores, "layer",
          "effect_shared * other_effect < 0 and (effect_shared.abs() > 0.05 or other_effect.abs() > 0.05)", "count", "{:.0f}")
    for r in (4, 5):
        claim(f"sweep no-yes: rank {r} head", f, scores, "", f"rank_effect == {r}", "head", "head")
        claim(f"sweep no-yes: rank {r} effect", f, scores, "effect_mean", f"rank_effect == {r}", "value", "{:+.2f}")
    for r in range(1, 6):
        claim(f"sweep no-yes: rank {r} yes-no effect", f, scores, "other_effect", f"rank_effect == {r}", "value", "{:+.2f}")


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
    debias_claims()
    for m in (SMOL, GEMMA):
        order_claims(m)
    order_causal_claims()
    order_causal_claims("n200 ")
    null_claims("zero")
    null_claims("mean")
    null_claims("gemma")
    sweep_claims()
    nas_page_claims()
    steps150_claims()
    gemma_extra_claims()
    whole_prompt_claims()
    order_sweep_claims()
    dataset_claims()
    study_claims()
    claim("make results: minutes", f"{D}/runtimes.csv", TABLES, "minutes", "", "sum", "{:.0f}")
    docs_mechanism_causal_claims()


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
        if not isinstance(x, str) and (x != x or (c["stat"] in ("count", "nunique") and x == 0)):
            print(f"skipped (the filter selects nothing yet): {c['claim']}")
            continue
        # a value that rounds to zero is printed without a minus ("+0.000" where the format signs it)
        value = x if c["fmt"] == "head" else re.sub(r"^-(0\.?0*%?)$", ("+" if "+" in c["fmt"] else "") + r"\1",
                                                    c["fmt"].format(x))
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
