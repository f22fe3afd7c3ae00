"""The fixes without heads: ``base`` (the model as it is) and ``threshold`` (a decision threshold on ``p_yes``
fitted on the training examples, :func:`fit_threshold`; the model is unchanged)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from nasa_lens.debias.base import DebiasMethod, gold_labels, positive_int, predict_p_yes, prompt_format, register

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel

__all__ = ["Base", "Threshold", "fit_threshold"]


def fit_threshold(labels: Sequence[int] | np.ndarray, p_yes: Sequence[float] | np.ndarray) -> float:
    """The decision threshold on ``p_yes`` (predict yes when ``p_yes > t``) that maximises balanced accuracy
    on these examples; ties go to the threshold with the smallest ``|pr_gap|``, then the one nearest 0.5."""
    from nasa_lens.evaluate import bias_metrics

    y = np.asarray(labels, int)
    p = np.asarray(p_yes, float)
    if not ((y == 1).any() and (y == 0).any()):
        raise ValueError("fitting a threshold needs both labels")
    u = np.unique(p)
    cands = np.concatenate([[u[0] - 1e-9], (u[:-1] + u[1:]) / 2, [u[-1]]]) if len(u) > 1 else np.array([u[0] - 1e-9, u[0]])
    best, best_key = 0.5, None
    for t in cands:
        pred = p > t
        tpr = (pred & (y == 1)).sum() / (y == 1).sum()
        tnr = (~pred & (y == 0)).sum() / (y == 0).sum()
        gap = bias_metrics(y, p, float(t))["pr_gap"]
        key = (round((tpr + tnr) / 2, 12), -(abs(gap) if not math.isnan(gap) else 1.0), -abs(t - 0.5))
        if best_key is None or key > best_key:
            best, best_key = float(t), key
    return best


@register
class Base(DebiasMethod):
    """No fix: the model as it is (the reference row of a comparison)."""

    name = "base"
    changes_model = False

    def _fit(self, model: LoadedModel, train: list[Any]) -> None:
        return None


@register
class Threshold(DebiasMethod):
    """A decision threshold on ``p_yes`` fitted on the training examples; the model is unchanged."""

    name = "threshold"
    changes_model = False
    fits_threshold = True
    option_names = ("fit_limit", "format", "batch_size")

    def __init__(self, fit_limit: int = 128, format: str = "yes-no", batch_size: int = 16) -> None:
        super().__init__()
        self.fit_limit = positive_int("fit_limit", fit_limit)
        self.format = format
        self.batch_size = positive_int("batch_size", batch_size)
        prompt_format(format)

    @property
    def n_params(self) -> int:
        return 1

    def _fit(self, model: LoadedModel, train: list[Any]) -> None:
        rows = train[: self.fit_limit]
        y = gold_labels(rows)
        p = predict_p_yes(model, rows, prompt_format(self.format), self.batch_size)
        self.threshold = float(fit_threshold(y, p))
        self.info = {"n_fit": len(rows)}
