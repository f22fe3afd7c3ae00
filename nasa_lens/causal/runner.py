"""The batch runner every causal study shares, and its helpers: NAS rankings from results, arrays or a scan's
nas.csv; metrics for many bootstrap / permutation draws at once.

:class:`BatchRunner` runs one clean forward per batch that caches the residual entering every layer; an
intervened forward whose first hooked layer is ``l`` then starts there (``run_with_hooks(start_at_layer=l)``).
Forwards unembed the last position only (a hook on ``ln_final.hook_out`` keeps the last column).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from nasa_lens.interventions import bridge_of
from nasa_lens.prompts import PromptBatch
from nasa_lens.vocab import NAS_RANKING_FILE, InputFileNotFoundError

from nasa_lens.causal.config import CausalError

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel

logger = logging.getLogger(__name__)


def ranking_array(ranking: Any, model: LoadedModel | None = None) -> Float[np.ndarray, "layer head"]:
    """A ``[layer, head]`` NAS array from a :class:`nasa_lens.nas.NASResult` (its ``.mean``), an array, or a
    nas.csv frame/path; checked against the model's shape when given."""
    if ranking is None:
        raise CausalError("a NAS ranking is needed (a NASResult, a [layer, head] array or a scan folder's nas.csv)")
    if isinstance(ranking, (str, Path)):
        arr = ranking_from_csv(ranking)
    elif isinstance(ranking, pd.DataFrame):
        arr = _ranking_from_frame(ranking, "the ranking frame")
    elif hasattr(ranking, "mean") and not isinstance(ranking, (np.ndarray, torch.Tensor)):
        arr = np.asarray(ranking.mean, dtype=float)
    else:
        arr = np.asarray(ranking.detach().cpu() if isinstance(ranking, torch.Tensor) else ranking, dtype=float)
    if arr.ndim != 2:
        raise CausalError(f"the NAS ranking must be a [layer, head] array, got shape {arr.shape}")
    if model is not None and arr.shape != (model.n_layers, model.n_heads):
        raise CausalError(
            f"the NAS ranking has shape {arr.shape} but the model has {model.n_layers} layers x {model.n_heads} heads"
        )
    return arr


def ranking_from_csv(path: str | Path) -> Float[np.ndarray, "layer head"]:
    """The ``[layer, head]`` mean NAS from a scan's ``nas.csv`` (``layer,head,nas_mean,...``); ``path`` is the
    file or the scan folder."""
    p = Path(path)
    if p.is_dir():
        p = p / NAS_RANKING_FILE
    if not p.is_file():
        raise InputFileNotFoundError(f"{p} not found: pass a scan folder (written by `nasa-lens scan`) or its nas.csv")
    return _ranking_from_frame(pd.read_csv(p), str(p))


def _ranking_from_frame(frame: pd.DataFrame, where: str) -> np.ndarray:
    value = next((c for c in ("nas_mean", "mean", "nas", "score") if c in frame.columns), None)
    if value is None or "layer" not in frame.columns or "head" not in frame.columns:
        raise CausalError(f"{where}: expected columns layer, head and nas_mean, got {list(frame.columns)}")
    n_layers, n_heads = int(frame["layer"].max()) + 1, int(frame["head"].max()) + 1
    arr = np.full((n_layers, n_heads), np.nan)
    arr[frame["layer"].to_numpy(int), frame["head"].to_numpy(int)] = frame[value].to_numpy(float)
    if np.isnan(arr).any():
        raise CausalError(f"{where}: not every (layer, head) has a score")
    return arr


def vector_metrics(
    labels: np.ndarray, p_yes: np.ndarray, logit_diff: np.ndarray, threshold: float = 0.5
) -> dict[str, np.ndarray]:
    """:func:`nasa_lens.evaluate.bias_metrics` for many resamples at once: inputs ``[draw, example]``, each
    metric ``[draw]`` (NaN where undefined, as there). Used for bootstrap and permutation draws."""
    y = np.asarray(labels)
    p = np.asarray(p_yes, float)
    d = np.asarray(logit_diff, float)
    pred = p > threshold
    pos = y == 1
    tp = (pred & pos).sum(-1).astype(float)
    fp = (pred & ~pos).sum(-1).astype(float)
    fn = (~pred & pos).sum(-1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        recall = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
        f1 = np.where(tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    return {
        "accuracy": (pred == pos).mean(-1),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "pr_gap": precision - recall,
        "yes_rate": pred.mean(-1),
        "mean_logit_diff": d.mean(-1),
    }


def percentile_interval(samples: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    v = np.asarray(samples, float)
    v = v[~np.isnan(v)]
    if not len(v):
        return float("nan"), float("nan")
    return float(np.quantile(v, alpha / 2)), float(np.quantile(v, 1 - alpha / 2))


# ============================================================================================ runner


LAST_ONLY = ("ln_final.hook_out", lambda x, hook=None: x[:, -1:])


class BatchRunner:
    """One batch: a clean forward that caches the residual entering every layer, then intervened forwards
    that start at the first hooked layer (layers below it are identical to the clean run)."""

    def __init__(self, model: Any, batch: PromptBatch, *, cache_resid: bool = True):
        self.model, self.batch, self.bridge = model, batch, bridge_of(model)
        self.resid: dict[int, Tensor] = {}
        self.has_last_only = "ln_final.hook_out" in self.bridge.hook_dict
        hooks = []
        if cache_resid:
            def store(x: Tensor, hook: Any) -> None:
                self.resid[int(hook.name.split(".")[1])] = x.detach()

            hooks.append((lambda n: n.startswith("blocks.") and n.endswith(".hook_resid_pre") and n.count(".") == 2, store))
        with torch.no_grad():
            self.clean: Float[Tensor, "example 2"] = self._run(hooks, None)

    def _run(self, hooks: Sequence[Any], start: int | None) -> Float[Tensor, "example 2"]:
        b = self.batch
        fwd = list(hooks) + ([LAST_ONLY] if self.has_last_only else [])
        if start:
            if start not in self.resid:
                raise RuntimeError(f"no cached residual for layer {start}")
            logits = self.bridge.run_with_hooks(self.resid[start], start_at_layer=start, fwd_hooks=fwd, **b.forward_kwargs())
        else:
            logits = self.bridge.run_with_hooks(b.input_ids, fwd_hooks=fwd, **b.forward_kwargs())
        return logits[:, -1][:, [b.answer_yes_id, b.answer_no_id]].float()

    @torch.no_grad()
    def pair(self, hooks: Sequence[Any], start: int | None = None) -> Float[Tensor, "example 2"]:
        """``(logit_yes, logit_no)`` at the last position with ``hooks`` installed, starting at layer
        ``start`` (None or 0: the whole model)."""
        return self._run(hooks, start if start and self.resid else None)


def p_yes_and_logit_diff(pair: Tensor) -> tuple[np.ndarray, np.ndarray]:
    return torch.softmax(pair, -1)[:, 0].cpu().double().numpy(), (pair[:, 0] - pair[:, 1]).cpu().double().numpy()


def example_labels(examples: Sequence[Any]) -> np.ndarray:
    return np.array([1 if getattr(ex, "label", None) == "yes" else 0 if getattr(ex, "label", None) == "no" else -1 for ex in examples])


def example_ids(examples: Sequence[Any]) -> list[str]:
    return [str(getattr(ex, "id", i)) for i, ex in enumerate(examples)]
