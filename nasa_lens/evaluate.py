"""Evaluate: batches -> ``p_yes`` per example -> bias metrics. The one place where metrics are defined.

``p_yes = softmax([logit_yes, logit_no])[0]`` at the last prompt position, over the two *answer* tokens.
"Yes" is the positive class: precision, recall and F1 are for "yes"; ``pr_gap = precision - recall`` is
the negative-bias signature (high precision, low recall); ``yes_rate`` is the share predicted "yes".
"""
from __future__ import annotations

from nasa_lens.vocab import METRICS_FILE, PREDICTIONS_FILE, InputError, check_threshold

import math
import sys
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from nasa_lens.io import atomic_path, read_json, write_json
from nasa_lens.parallel import over_examples
from nasa_lens.prompts import PromptBatch, PromptFormat, by_batch_plan, iter_batches

__all__ = [
    "METRIC_KEYS",
    "EvalResult",
    "answer_logits",
    "bias_metrics",
    "bootstrap_ci",
    "evaluate",
    "paired_difference",
    "predict",
]

METRIC_KEYS = ("accuracy", "precision", "recall", "f1", "pr_gap", "yes_rate", "ece", "auroc", "mean_logit_diff")


def answer_logits(model: Any, batch: PromptBatch, hooks: Sequence[tuple[str | Callable, Callable]] = ()) -> Float[Tensor, "example 2"]:
    """Logits of the (positive, negative) answer tokens at the last prompt position.

    ``hooks`` are ``(name or filter, fn)`` pairs run with ``run_with_hooks`` (removed afterwards).
    """
    bridge = model.bridge if hasattr(model, "bridge") else model
    kwargs = batch.forward_kwargs()
    if hooks:
        logits = bridge.run_with_hooks(batch.input_ids, fwd_hooks=list(hooks), **kwargs)
    else:
        logits = bridge(batch.input_ids, **kwargs)
    last = logits[torch.arange(len(batch), device=logits.device), batch.pos_answer]
    return last[:, [batch.answer_yes_id, batch.answer_no_id]].float()


def p_yes_from_logits(pair: Float[Tensor, "example 2"]) -> Float[Tensor, " example"]:
    return torch.softmax(pair, dim=-1)[:, 0]


@over_examples(groups=by_batch_plan)
def predict(
    model: Any,
    examples: Sequence[Any],
    fmt: PromptFormat | None = None,
    *,
    batch_size: int = 16,
    hooks: Sequence[tuple[str | Callable, Callable]] = (),
    progress: bool = True,
    desc: str = "eval",
) -> tuple[np.ndarray, np.ndarray]:
    """``(p_yes, logit_diff)`` for every example, in input order (``logit_diff = logit(yes) - logit(no)``).

    Data-parallel inside a process group (:mod:`nasa_lens.parallel`): each rank runs its batches and every
    rank gets all the outputs."""
    n = len(examples)
    p = np.full(n, np.nan)
    d = np.full(n, np.nan)
    bar = tqdm(total=n, desc=desc, disable=not progress, leave=False)
    with torch.no_grad():
        for idx, batch in iter_batches(model, examples, fmt, batch_size):
            pair = answer_logits(model, batch, hooks)
            p[idx] = p_yes_from_logits(pair).cpu().numpy()
            d[idx] = (pair[:, 0] - pair[:, 1]).cpu().numpy()
            bar.update(len(idx))
    bar.close()
    return p, d


# ------------------------------------------------------------------------------------------------ metrics


def auroc(y: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney AUROC with ties counted half; NaN when one class is absent."""
    pos, neg = score[y == 1], score[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    allv = np.concatenate([pos, neg])[order]
    ranks = np.empty(len(allv))
    # average ranks over ties
    i = 0
    while i < len(allv):
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[i : j + 1] = (i + j) / 2 + 1
        i = j + 1
    r = np.empty(len(allv))
    r[order] = ranks
    return float((r[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _ece(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error of ``p_yes`` against ``y`` (equal-width bins on [0, 1])."""
    if len(y) == 0:
        return float("nan")
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    err = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            err += m.mean() * abs(p[m].mean() - y[m].mean())
    return float(err)


def predicted_yes(p_yes: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The decision: "yes" where ``p_yes > threshold`` (ties go to "no"), as booleans."""
    return np.asarray(p_yes, dtype=float) > threshold


def bias_metrics(labels: Sequence[int] | np.ndarray, p_yes: Sequence[float] | np.ndarray, threshold: float = 0.5, logit_diff: np.ndarray | None = None) -> dict[str, float]:
    """Metrics with "yes" as the positive class.

    ``labels``: 1 = yes, 0 = no. A prediction is "yes" when ``p_yes > threshold`` (ties go to "no").
    Precision is NaN when nothing is predicted "yes"; recall NaN when there is no gold "yes".
    """
    y = np.asarray(labels, dtype=int)
    p = np.asarray(p_yes, dtype=float)
    if y.shape != p.shape:
        raise ValueError(f"labels {y.shape} and p_yes {p.shape} differ in shape")
    pred = predicted_yes(p, threshold).astype(int)
    tp = int(((pred == 1) & (y == 1)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    return {
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "pr_gap": precision - recall if not (math.isnan(precision) or math.isnan(recall)) else float("nan"),
        "yes_rate": float(pred.mean()) if len(y) else float("nan"),
        "ece": _ece(y, p),
        "auroc": auroc(y, p),
        "mean_logit_diff": float(np.mean(logit_diff)) if logit_diff is not None and len(logit_diff) else float("nan"),
    }


def bootstrap_ci(
    labels: np.ndarray,
    p_yes: np.ndarray,
    *,
    logit_diff: np.ndarray | None = None,
    threshold: float = 0.5,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap ``(low, high)`` for every metric (resampling examples with replacement).
    NaN resamples (e.g. no predicted "yes") are left out of that metric's interval."""
    rng = np.random.default_rng(seed)
    y, p = np.asarray(labels, int), np.asarray(p_yes, float)
    d = None if logit_diff is None else np.asarray(logit_diff, float)
    n = len(y)
    samples: dict[str, list[float]] = {k: [] for k in METRIC_KEYS}
    for _ in range(n_boot if n else 0):
        i = rng.integers(0, n, n)
        m = bias_metrics(y[i], p[i], threshold, None if d is None else d[i])
        for k in METRIC_KEYS:
            samples[k].append(m[k])
    out = {}
    for k, vals in samples.items():
        v = np.asarray(vals, float)
        v = v[~np.isnan(v)]
        out[k] = (float(np.quantile(v, alpha / 2)), float(np.quantile(v, 1 - alpha / 2))) if len(v) else (float("nan"), float("nan"))
    return out


def paired_difference(
    labels: np.ndarray,
    p_a: np.ndarray,
    p_b: np.ndarray,
    *,
    threshold_a: float = 0.5,
    threshold_b: float = 0.5,
    metric: str = "accuracy",
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, float]:
    """``metric`` of predictions A minus that of predictions B on the *same* questions, with a paired
    percentile bootstrap: each resample draws questions with replacement and scores both on the same draw, so
    the interval is the one for the difference (narrower than two separate intervals when A and B agree on
    most questions). ``p``: two-sided bootstrap p-value, twice the smaller share of resamples on either side
    of 0 (at most 1; its resolution is ``1 / n_boot``).

    Returns ``diff``, ``lo``, ``hi``, ``p``, ``a``, ``b`` (the two metrics), ``n``, ``n_boot``, ``seed``.
    """
    if metric not in METRIC_KEYS:
        raise InputError(f"unknown metric {metric!r}; expected one of {', '.join(METRIC_KEYS)}")
    y = np.asarray(labels, int)
    a, b = np.asarray(p_a, float), np.asarray(p_b, float)
    if not (y.shape == a.shape == b.shape) or y.ndim != 1 or not len(y):
        raise InputError(f"labels and both predictions must be 1-D arrays over the same questions, got {y.shape}, {a.shape}, {b.shape}")

    def diff(i: np.ndarray) -> tuple[float, float, float]:
        ma = bias_metrics(y[i], a[i], threshold_a)[metric]
        mb = bias_metrics(y[i], b[i], threshold_b)[metric]
        return ma - mb, ma, mb

    point, ma, mb = diff(np.arange(len(y)))
    rng = np.random.default_rng(seed)
    if metric in ("accuracy", "yes_rate"):  # means of per-question values: every resample at once, same draws
        per_q = {"accuracy": lambda p, t: predicted_yes(p, t).astype(int) == y, "yes_rate": predicted_yes}[metric]
        idx = rng.integers(0, len(y), (n_boot, len(y)))
        boot = per_q(a, threshold_a)[idx].mean(axis=1) - per_q(b, threshold_b)[idx].mean(axis=1)
    else:
        boot = np.array([diff(rng.integers(0, len(y), len(y)))[0] for _ in range(n_boot)])
    boot = boot[~np.isnan(boot)]
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2]) if len(boot) else (math.nan, math.nan)
    p = min(1.0, 2 * min(np.mean(boot <= 0), np.mean(boot >= 0))) if len(boot) else math.nan
    return {"diff": float(point), "lo": float(lo), "hi": float(hi), "p": float(p), "a": float(ma), "b": float(mb),
            "n": int(len(y)), "n_boot": int(n_boot), "seed": int(seed)}


# ------------------------------------------------------------------------------------------------ result


@dataclass
class EvalResult:
    """Per-example ``p_yes`` and the bias metrics of one model on one dataset."""

    ids: list[str]
    labels: np.ndarray  # 1 yes / 0 no
    p_yes: np.ndarray
    logit_diff: np.ndarray
    metrics: dict[str, float]
    ci: dict[str, tuple[float, float]]
    threshold: float = 0.5
    model: str = ""
    dataset: str = ""
    format: str = "Yes/No"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def pred(self) -> np.ndarray:
        return predicted_yes(self.p_yes, self.threshold).astype(int)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per example: ``id, label, p_yes, pred, logit_diff`` (label/pred as "yes"/"no")."""
        yn = np.array(["no", "yes"])
        return pd.DataFrame(
            {
                "id": self.ids,
                "label": yn[self.labels],
                "p_yes": self.p_yes,
                "pred": yn[self.pred],
                "logit_diff": self.logit_diff,
            }
        )

    def metrics_frame(self) -> pd.DataFrame:
        """One row per metric: value and 95% interval."""
        return pd.DataFrame(
            [{"metric": k, "value": self.metrics[k], "ci_low": self.ci[k][0], "ci_high": self.ci[k][1]} for k in METRIC_KEYS]
        )

    def metrics_json(self) -> dict[str, Any]:
        """The metric keys plus ``n`` and ``ci`` (what ``metrics.json`` holds)."""
        return {**self.metrics, "n": self.n, "ci": {k: list(v) for k, v in self.ci.items()},
                "model": self.model, "dataset": self.dataset, "format": self.format, "threshold": self.threshold}

    def summary(self) -> str:
        m = self.metrics
        return (
            f"{self.model} on {self.dataset} (n={self.n}): acc {m['accuracy']:.3f}  precision {m['precision']:.3f}  "
            f"recall {m['recall']:.3f}  F1 {m['f1']:.3f}  pr_gap {m['pr_gap']:.3f}  yes_rate {m['yes_rate']:.3f}  "
            f"ECE {m['ece']:.3f}  AUROC {m['auroc']:.3f}"
        )

    def save(self, out_dir: str | Path) -> Path:
        """Write ``metrics.json`` and ``predictions.csv`` (``id,label,p_yes,pred``) atomically."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / METRICS_FILE, self.metrics_json())
        with atomic_path(out / PREDICTIONS_FILE) as tmp:
            self.to_dataframe().to_csv(tmp, index=False)
        return out

    @classmethod
    def load(cls, out_dir: str | Path) -> EvalResult:
        out = Path(out_dir)
        meta = read_json(out / METRICS_FILE)
        df = pd.read_csv(out / PREDICTIONS_FILE, dtype={"id": str})
        labels = (df["label"] == "yes").to_numpy(int)
        return cls(
            ids=df["id"].tolist(),
            labels=labels,
            p_yes=df["p_yes"].to_numpy(float),
            logit_diff=df["logit_diff"].to_numpy(float) if "logit_diff" in df else np.full(len(df), np.nan),
            metrics={k: (float("nan") if meta.get(k) is None else float(meta[k])) for k in METRIC_KEYS},
            ci={k: tuple(float("nan") if x is None else x for x in v) for k, v in meta.get("ci", {}).items()},
            threshold=float(meta.get("threshold", 0.5)),
            model=meta.get("model", ""),
            dataset=meta.get("dataset", ""),
            format=meta.get("format", "Yes/No"),
        )


def result_from_predictions(
    ids: Sequence[str], labels: np.ndarray, p_yes: np.ndarray, logit_diff: np.ndarray, *,
    threshold: float = 0.5, n_boot: int = 1000, seed: int = 0, model: str = "", dataset: str = "", format: str = "Yes/No",
) -> EvalResult:
    labels = np.asarray(labels, int)
    if (labels < 0).any():
        raise InputError("every example needs a gold label ('yes' or 'no') to be evaluated")
    return EvalResult(
        ids=list(ids),
        labels=labels,
        p_yes=np.asarray(p_yes, float),
        logit_diff=np.asarray(logit_diff, float),
        metrics=bias_metrics(labels, p_yes, threshold, logit_diff),
        ci=bootstrap_ci(labels, p_yes, logit_diff=logit_diff, threshold=threshold, n_boot=n_boot, seed=seed),
        threshold=threshold,
        model=model,
        dataset=dataset,
        format=format,
    )


def checked_examples(dataset: Any, *, labelled: bool = True, what: str = "evaluate") -> tuple[list[Any], str]:
    """``(examples, dataset name)`` of what a public function was given as its data, checked before any forward
    (:func:`nasa_lens.datasets.loader.as_examples`: a dataset name, Examples, dicts with question/label; plain
    prompt strings only when ``labelled`` is False)."""
    from nasa_lens.datasets.loader import as_examples

    return as_examples(dataset, labelled=labelled, what=what)


def evaluate(
    model: Any,
    dataset: Sequence[Any],
    fmt: PromptFormat | None = None,
    *,
    batch_size: int = 16,
    threshold: float = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
    hooks: Sequence[tuple[str | Callable, Callable]] = (),
    progress: bool = True,
) -> EvalResult:
    """Run ``model`` on every example of ``dataset`` and compute the bias metrics with bootstrap CIs.

    ``hooks`` (``(name, fn)`` pairs) let a caller evaluate an intervened model; they are scoped to this call.
    """
    fmt = fmt or PromptFormat()
    threshold = check_threshold(threshold)
    examples, name = checked_examples(dataset, labelled=True, what="evaluate")
    if not examples:
        raise InputError("nothing to evaluate: the sample is empty (check --limit and --split)")
    p, d = predict(model, examples, fmt, batch_size=batch_size, hooks=hooks, progress=progress)
    labels = np.array([1 if ex.label == "yes" else 0 if ex.label == "no" else -1 for ex in examples], int)
    return result_from_predictions(
        [ex.id for ex in examples], labels, p, d, threshold=threshold, n_boot=n_boot, seed=seed,
        model=getattr(model, "name", ""), dataset=name, format=fmt.label,
    )


class _CallableModule(types.ModuleType):
    """``nasa_lens.evaluate`` names both this module and its main function. Once the module is imported, Python
    sets the package attribute ``nasa_lens.evaluate`` to the module, which would shadow the lazily exported
    function (``nl.evaluate(model, data)`` would fail depending on import order); calling the module calls
    :func:`evaluate`, so both spellings work whatever was imported first."""

    def __call__(self, *args: Any, **kwargs: Any) -> EvalResult:
        return evaluate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
