"""Every number in the README's findings, in docs/results.md and in the ``## Findings`` section of each docs page
(:data:`FINDINGS_PAGES`) is a claim in figures/data/index.csv, and every claim there is recomputed from its
committed file (issue #20).

``figures/data/index.csv`` columns: ``claim`` (what it is), ``value`` (the number exactly as the docs print it),
``file`` (a committed CSV, ``.csv.gz`` when large, relative to the repository root), ``command`` (the command
that wrote the file; ``make results`` runs each), then the recomputation spec: ``column``, ``filter`` (a pandas
``DataFrame.query`` string, empty: every row) and ``stat``:

* ``value``: the filtered frame holds exactly one row; its ``column``
* ``mean``, ``median``, ``min``, ``max``, ``sum``: of ``column`` over the filtered rows; ``count``: the rows;
  ``nunique``: distinct values of ``column``
* ``delta``: ``filter`` is ``A ;; B``: mean of ``column`` over rows ``A`` minus over rows ``B``
* ``null_p``, ``null_p_le``: ``filter`` is ``A ;; B``, A one row (the tested set) and B the null rows (e.g.
  random head sets): ``(1 + #B rows with column >= A's) / (1 + #B rows)`` (``null_p_le``: ``<=``), the
  one-sided permutation-style p-value of A among B
* ``head``: exactly one row; ``"{layer}.{head}"``
* ``mean_abs``: mean of ``|column|``; ``mean_abs_diff:OTHER``: mean of ``|column - OTHER|`` (over the filtered rows)
* ``pearson:OTHER``, ``spearman:OTHER``: correlation of ``column`` with ``OTHER`` over the filtered rows
* ``spearman_q:OTHER``, ``spearman_q_lo:OTHER``, ``spearman_q_hi:OTHER``: the file holds ``id,layer,head``
  rows (one per question and head); the Spearman, over heads, between the per-head means of ``column`` and
  ``OTHER``, and its 95% bootstrap bounds over questions (``nasa_lens.causal.bootstrap_rank_correlation``,
  1000 resamples, seed 0)
* ``paired``, ``paired_lo``, ``paired_hi``, ``paired_p``: ``filter`` is ``A ;; B``, two selections of a
  per-question predictions file (``id,label,p_yes,threshold``); ``column`` (a bias metric) of A minus B on the
  questions both hold, with its 95% paired bootstrap bounds and two-sided p
  (``nasa_lens.debias.paired_frames``, 1000 resamples, seed 0; each side at its own threshold)
* ``metric``, ``metric_lo``, ``metric_hi``: ``column`` names a bias metric; recomputed (point value or 95%
  bootstrap bound, 1000 resamples, seed 0, threshold 0.5: what ``nasa-lens eval`` reports) from a
  ``predictions.csv`` (``label``, ``p_yes``, ``logit_diff``) with ``nasa_lens.evaluate.result_from_predictions``

The recomputed number is printed with the decimals (and sign, and ``%``) of ``value`` and must equal it.
A document number matches a claim when it equals the claim's ``value`` string (after mapping "−" to "-").

Numbers that are not measurements are skipped only where this file says: inside code spans and fenced code,
in link targets, and the literal strings of :data:`NOT_MEASURED`.
"""
from __future__ import annotations

import functools
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
INDEX = ROOT / "figures" / "data" / "index.csv"
# The docs pages that report measurements: each has one ``## Findings`` section (to the next ``## `` heading); the
# rest of a page describes methods, and its ``## Cost`` sections are benchmark output (``benchmarks/``).
FINDINGS_PAGES = ("docs/nas.md", "docs/causal.md", "docs/mechanism.md", "docs/finetuning.md", "docs/debias.md", "docs/study.md")
DOCS = {"README.md": ("## What it found", "\n## "), "docs/results.md": (None, None),
        **{p: ("\n## Findings", "\n## ") for p in FINDINGS_PAGES}}

# Names and conventions that contain digits but measure nothing (each written exactly so in the docs).
NOT_MEASURED = ("95%", "SmolLM2-135M-Instruct", "Gemma 3 270M", "4-bit", "issue #20", "issue #19", "issue #18")

NUMBER = re.compile(r"(?:(?<=[\s(\[,/–=:;])|^)([+\-−]?\d+(?:\.\d+)?%?)(?![\w])(?!\.\d)")


def doc_text(rel: str, start: str | None, end: str | None) -> str:
    text = (ROOT / rel).read_text(encoding="utf-8")
    if start is not None:
        assert start in text, f"{rel}: no {start.strip()!r} section"
        i = text.index(start)
        j = text.find(end, i + len(start)) if end else -1
        text = text[i: j if j >= 0 else None]
    return text


def doc_numbers(text: str) -> list[str]:
    """The numbers of a markdown text that must be claims (see the module docstring for what is skipped)."""
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    text = re.sub(r"`[^`\n]*`", " ", text)
    text = re.sub(r"\]\([^)]*\)", "] ", text)
    text = re.sub(r"<[^>\n]*>", " ", text)
    for s in NOT_MEASURED:
        text = text.replace(s, " ")
    return [m.group(1).replace("−", "-") for m in NUMBER.finditer(text)]


def load_index() -> pd.DataFrame:
    return pd.read_csv(INDEX, dtype=str, keep_default_na=False)


@functools.lru_cache(maxsize=None)
def _frame(file: str) -> pd.DataFrame:
    return pd.read_csv(ROOT / file)


@functools.lru_cache(maxsize=None)
def _eval_result(file: str, filt: str):
    """``nasa-lens eval``'s metrics and intervals, recomputed from a predictions file (cached per file and filter)."""
    from nasa_lens.evaluate import result_from_predictions

    df = _frame(file)
    sub = df.query(filt) if filt else df
    labels = (sub["label"] == "yes").to_numpy(int)
    return result_from_predictions(sub["id"].astype(str).tolist(), labels, sub["p_yes"].to_numpy(float),
                                   sub["logit_diff"].to_numpy(float), n_boot=1000, seed=0)


@functools.lru_cache(maxsize=None)
def _rank_ci(file: str, filt: str, col: str, other: str) -> dict[str, float]:
    """The bootstrap over questions of Spearman(per-head mean of ``col``, of ``other``) (cached per file and pair)."""
    from nasa_lens.causal import bootstrap_rank_correlation

    df = _frame(file)
    sub = df.query(filt) if filt else df
    wide = [sub.pivot(index="id", columns=["layer", "head"], values=c).sort_index(axis=1).to_numpy() for c in (col, other)]
    return bootstrap_rank_correlation(*wide, n_boot=1000, seed=0)


@functools.lru_cache(maxsize=None)
def _paired(file: str, filt: str, col: str) -> dict[str, float]:
    """A paired difference of two selections of a predictions file (cached per file, filter and metric)."""
    from nasa_lens.debias import DebiasError, paired_frames

    df = _frame(file)
    a, b = (df.query(f.strip()) for f in filt.split(";;"))
    try:
        return paired_frames(a, b, col, n_boot=1000, seed=0, what=f"{filt}: the two selections")
    except DebiasError as exc:
        raise AssertionError(str(exc)) from None


def recompute(row: dict[str, str]) -> float | str:
    """The claim's number (or head name) recomputed from its file by its spec."""
    df = _frame(row["file"]).copy()
    col, filt, stat = row["column"], row["filter"].strip(), row["stat"]
    if stat in ("paired", "paired_lo", "paired_hi", "paired_p"):
        return _paired(row["file"], filt, col)[{"paired": "diff"}.get(stat, stat.removeprefix("paired_"))]
    if stat in ("null_p", "null_p_le"):
        a, b = (df.query(f.strip()) for f in filt.split(";;"))
        assert len(a) == 1 and len(b), f"{row['claim']}: A selects {len(a)} rows (not 1), B {len(b)}"
        x, null = float(a[col].iloc[0]), b[col].to_numpy(float)
        hits = (null >= x) if stat == "null_p" else (null <= x)
        return float((1 + hits.sum()) / (1 + len(null)))
    if stat == "delta":
        a, b = (f.strip() for f in filt.split(";;"))
        return float(df.query(a)[col].mean() - df.query(b)[col].mean())
    sub = df.query(filt) if filt else df
    if stat in ("value", "head"):
        assert len(sub) == 1, f"{row['claim']}: the filter selects {len(sub)} rows, not 1"
        r = sub.iloc[0]
        return f"{int(r['layer'])}.{int(r['head'])}" if stat == "head" else r[col]
    if stat == "count":
        return float(len(sub))
    if stat == "nunique":
        return float(sub[col].nunique())
    if stat in ("mean", "median", "min", "max", "sum"):
        return float(getattr(sub[col], stat)())
    if stat.startswith(("spearman_q:", "spearman_q_lo:", "spearman_q_hi:")):
        which, other = stat.split(":", 1)
        return _rank_ci(row["file"], filt, col, other)[{"spearman_q": "spearman", "spearman_q_lo": "lo", "spearman_q_hi": "hi"}[which]]
    if stat == "mean_abs":
        return float(sub[col].abs().mean())
    if stat.startswith("mean_abs_diff:"):
        return float((sub[col] - sub[stat.split(":", 1)[1]]).abs().mean())
    if stat.startswith(("pearson:", "spearman:")):
        method, other = stat.split(":", 1)
        return float(sub[col].corr(sub[other], method=method))
    if stat in ("metric", "metric_lo", "metric_hi"):
        res = _eval_result(row["file"], filt)
        if stat == "metric":
            return float(res.metrics[col])
        lo, hi = res.ci[col]
        return float(lo if stat == "metric_lo" else hi)
    raise AssertionError(f"{row['claim']}: unknown stat {stat!r}")


def render(x: float | str, like: str) -> str:
    """``x`` printed as ``like`` is: same decimals, a ``+`` when ``like`` has one, ``%`` (x100) when it has one."""
    if isinstance(x, str):
        return x
    x = float(x)
    pct = like.endswith("%")
    body = like.rstrip("%").lstrip("+-−")
    dec = len(body.split(".")[1]) if "." in body else 0
    if pct:
        x *= 100
    if math.isnan(x):
        return "nan"
    s = f"{x:.{dec}f}"
    if s.lstrip("-").strip("0.") == "":
        s = s.lstrip("-")  # no "-0.000"
    if like.startswith("+") and not s.startswith("-"):
        s = "+" + s
    return s + ("%" if pct else "")


def norm(v: str) -> str:
    return v.replace("−", "-")


def test_index_is_well_formed():
    idx = load_index()
    assert list(idx.columns[:4]) == ["claim", "value", "file", "command"]
    assert {"column", "filter", "stat"} <= set(idx.columns)
    assert len(idx), "index.csv lists no claim"
    for row in idx.to_dict("records"):
        assert (ROOT / row["file"]).is_file(), f"{row['claim']}: {row['file']} is not committed"
        assert row["file"].startswith("figures/data/"), row["file"]
        assert row["command"].strip(), f"{row['claim']}: no command"


def test_every_claim_recomputes():
    bad = []
    for row in load_index().to_dict("records"):
        got = render(recompute(row), norm(row["value"]))
        if norm(got) != norm(row["value"]):
            bad.append(f"{row['claim']}: index says {row['value']}, {row['file']} gives {got}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("rel", list(DOCS))
def test_every_doc_number_is_a_claim(rel):
    values = {norm(v) for v in load_index()["value"]}
    nums = doc_numbers(doc_text(rel, *DOCS[rel]))
    assert nums, f"{rel}: no number found (is the section heading still {DOCS[rel][0]!r}?)"
    missing = sorted({n for n in nums if n not in values})
    assert not missing, f"{rel}: numbers not in figures/data/index.csv: {missing}"


@pytest.mark.parametrize("rel", FINDINGS_PAGES)
def test_each_findings_page_has_one_findings_section(rel):
    """A second ``## Findings`` heading would go unchecked; a page without one fails in ``doc_text``."""
    text = (ROOT / rel).read_text(encoding="utf-8")
    assert text.count("\n## Findings") == 1, f"{rel}: {text.count(chr(10) + '## Findings')} '## Findings' sections, not 1"


def test_the_check_can_fail():
    """A value off in its last digit, a filter that selects no row, and a document number that is no claim are
    each caught."""
    idx = load_index()
    row = next(r for r in idx.to_dict("records") if re.fullmatch(r"[+\-]?\d+\.\d+", norm(r["value"])))
    value = norm(row["value"])
    assert render(recompute(row), value) == value
    bumped = value[:-1] + str((int(value[-1]) + 1) % 10)
    assert render(recompute(row), bumped) != bumped
    with pytest.raises(AssertionError):
        recompute({**row, "stat": "value", "filter": "index < 0"})
    values = {norm(v) for v in idx["value"]}
    nums = doc_numbers("accuracy 0.123456 [0.1, 0.2] (`n = 7` in code is skipped)")
    assert nums == ["0.123456", "0.1", "0.2"] and "0.123456" not in values
    assert render(0.2249, "+0.225") == "+0.225" and render(-0.0001, "0.000") == "0.000" and render(0.42, "42%") == "42%"


def test_the_derived_statistics_on_known_data(tmp_path):
    """``null_p``, ``paired`` and ``spearman_q`` on small files whose answers are known by hand."""
    sets = pd.DataFrame({"set": ["nas", "r0", "r1", "r2", "r3"], "d": [0.5, 0.1, 0.6, -0.2, 0.5]})
    sets.to_csv(tmp_path / "sets.csv", index=False)
    row = {"claim": "t", "file": str(tmp_path / "sets.csv"), "column": "d", "filter": "set != 'r2'"}
    assert recompute({**row, "stat": "mean_abs"}) == pytest.approx((0.5 + 0.1 + 0.6 + 0.5) / 4)
    sets.assign(e=[0.0, 0.3, 0.6, 0.2, 0.0]).to_csv(tmp_path / "sets_e.csv", index=False)
    assert recompute({**row, "file": str(tmp_path / "sets_e.csv"), "stat": "mean_abs_diff:e"}) == pytest.approx((0.5 + 0.2 + 0.0 + 0.5) / 4)
    row = {"claim": "t", "file": str(tmp_path / "sets.csv"), "column": "d", "filter": "set == 'nas' ;; set != 'nas'"}
    assert recompute({**row, "stat": "null_p"}) == pytest.approx(3 / 5)  # 0.6 and 0.5 reach 0.5, plus one
    assert recompute({**row, "stat": "null_p_le"}) == pytest.approx(4 / 5)
    pred = pd.DataFrame({"m": ["a"] * 4 + ["b"] * 4, "id": list("wxyz") * 2, "label": [1, 0, 1, 0] * 2,
                         "p_yes": [0.9, 0.1, 0.8, 0.2, 0.9, 0.9, 0.1, 0.2], "threshold": 0.5})
    pred.to_csv(tmp_path / "pred.csv", index=False)
    row = {"claim": "t", "file": str(tmp_path / "pred.csv"), "column": "accuracy", "filter": "m == 'a' ;; m == 'b'"}
    assert recompute({**row, "stat": "paired"}) == pytest.approx(1.0 - 0.5)
    assert recompute({**row, "stat": "paired_lo"}) <= 0.5 <= recompute({**row, "stat": "paired_hi"})
    rng = np.random.default_rng(0)
    long = pd.DataFrame([(f"q{i}", h, 0, h + rng.normal(), -h + rng.normal()) for i in range(30) for h in range(6)],
                        columns=["id", "layer", "head", "effect", "score"])
    long.to_csv(tmp_path / "long.csv", index=False)
    row = {"claim": "t", "file": str(tmp_path / "long.csv"), "column": "effect", "filter": ""}
    assert recompute({**row, "stat": "spearman_q:score"}) == pytest.approx(-1.0)
    assert -1.0 <= recompute({**row, "stat": "spearman_q_lo:score"}) <= recompute({**row, "stat": "spearman_q_hi:score"}) <= -0.5
