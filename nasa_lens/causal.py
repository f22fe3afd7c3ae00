"""Causal verification: do the high-NAS heads *cause* the negative bias?

NAS says where a head looks; this module intervenes and measures. Every study compares against controls and
reports effect sizes with confidence intervals and p-values, as tidy long-format tables.

* :func:`ablate` (CLI ``nasa-lens ablate``): one head set ablated, metrics before / after.
* :func:`ablation_curve`: ablate the top-k NAS heads for each k, side by side with k random heads (several
  seeds) and the k lowest-NAS heads; paired bootstrap CIs (examples resampled, the same draw for the clean
  run) and a permutation p-value of top-k (and bottom-k) against the random control.
* :func:`effect_sweep`: the effect of ablating each head alone on the mean logit difference
  ``logit(Yes) - logit(No)``, exactly (one ablated forward per head, started at the head's layer from the
  cached clean residual) or by attribution patching (one clean forward + one backward for all heads:
  ``effect ~ (z_ablated - z_clean) . d metric / d z``); :func:`sweep_correlation` compares the two and
  :func:`nas_effect_table` puts NAS beside the causal effect.
* :func:`patch_heads` (CLI ``nasa-lens patch``): activation patching on counterfactual pairs (candidate order
  swapped, or gold answer flipped), per head, on the head output ``z`` or its attention pattern, normalised
  like TransformerLens: ``(patched - corrupted) / (clean - corrupted)`` of the mean logit difference.

Layout follows TransformerLens ``patching.py``: generic runners (:class:`_BatchRunner`,
:func:`generic_head_patch`), thin named specialisations, result dataclasses with ``to_dataframe()`` (long
format), error bars and p-values, ``save`` / ``load``. One validated config dataclass per procedure.

Speed: forwards compute logits at the last position only (a hook on ``ln_final.hook_out`` keeps the last
column, so the unembedding runs on one position), and an intervention whose first hooked layer is ``l`` runs
from the clean residual cached at ``blocks.{l}.hook_resid_pre`` (``run_with_hooks(start_at_layer=l)``); the
start-layer path agrees with a full forward to float32 rounding (about 1e-5 on SmolLM2's logits).
"""
from __future__ import annotations

from nasa_lens.vocab import NasaLensError

import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import einops
import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from nasa_lens.evaluate import EvalResult, bias_metrics, result_from_predictions
from nasa_lens.heads import Head, format_head, parse_heads, random_heads, ranked_heads
from nasa_lens.interventions import (
    ABLATION_MODES,
    HeadAblation,
    ZReference,
    check_heads,
    collect_z_reference,
    pattern_hook_name,
    z_hook_name,
)
from nasa_lens.io import atomic_path, read_json, write_json
from nasa_lens.prompts import PromptBatch, PromptFormat, build_batch, iter_batches

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel

__all__ = [
    "CURVE_METRICS",
    "CausalError",
    "AblationConfig",
    "AblationResult",
    "AblationCurveConfig",
    "AblationCurveResult",
    "EffectSweepConfig",
    "EffectSweepResult",
    "PatchingConfig",
    "PatchingResult",
    "PairSet",
    "ablate",
    "ablation_curve",
    "effect_sweep",
    "exact_effects",
    "attribution_effects",
    "sweep_correlation",
    "nas_effect_table",
    "rank_correlation",
    "ranking_array",
    "ranking_from_csv",
    "swap_pairs",
    "label_pairs",
    "generic_head_patch",
    "patch_head_outputs",
    "patch_head_patterns",
    "patch_heads",
    "vector_metrics",
]

logger = logging.getLogger(__name__)

CURVE_METRICS: tuple[str, ...] = ("yes_rate", "recall", "precision", "pr_gap", "accuracy", "mean_logit_diff")
_VECTOR_METRICS = ("accuracy", "precision", "recall", "f1", "pr_gap", "yes_rate", "mean_logit_diff")
_FORMATS = ("yes-no", "no-yes", "true-false", "false-true")


class CausalError(NasaLensError, ValueError):
    """A causal study is mis-specified (bad config, ranking of the wrong shape, no counterfactual pairs)."""


# ============================================================================================ helpers


def _bridge(model: Any) -> Any:
    return model.bridge if hasattr(model, "bridge") else model


def _format(fmt: PromptFormat | str | None) -> PromptFormat:
    if fmt is None:
        return PromptFormat()
    if isinstance(fmt, str):
        return PromptFormat.named(fmt)
    return fmt


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
        p = p / "nas.csv"
    if not p.is_file():
        raise FileNotFoundError(f"{p} not found: pass a scan folder (written by `nasa-lens scan`) or its nas.csv")
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


def _quantiles(samples: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    v = np.asarray(samples, float)
    v = v[~np.isnan(v)]
    if not len(v):
        return float("nan"), float("nan")
    return float(np.quantile(v, alpha / 2)), float(np.quantile(v, 1 - alpha / 2))


# ============================================================================================ runner


_LAST_ONLY = ("ln_final.hook_out", lambda x, hook=None: x[:, -1:])


class _BatchRunner:
    """One batch: a clean forward that caches the residual entering every layer, then intervened forwards
    that start at the first hooked layer (layers below it are identical to the clean run)."""

    def __init__(self, model: Any, batch: PromptBatch, *, cache_resid: bool = True):
        self.model, self.batch, self.bridge = model, batch, _bridge(model)
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
        fwd = list(hooks) + ([_LAST_ONLY] if self.has_last_only else [])
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


def _p_and_diff(pair: Tensor) -> tuple[np.ndarray, np.ndarray]:
    return torch.softmax(pair, -1)[:, 0].cpu().double().numpy(), (pair[:, 0] - pair[:, 1]).cpu().double().numpy()


def _labels(examples: Sequence[Any]) -> np.ndarray:
    return np.array([1 if getattr(ex, "label", None) == "yes" else 0 if getattr(ex, "label", None) == "no" else -1 for ex in examples])


def _ids(examples: Sequence[Any]) -> list[str]:
    return [str(getattr(ex, "id", i)) for i, ex in enumerate(examples)]


# ============================================================================================ ablate


@dataclass
class AblationConfig:
    """One ablation (``nasa-lens ablate``).

    Attributes:
        heads: a head spec (``top:K``, ``bottom:K``, ``random:K[:SEED]``, ``L.H,L.H``) or a list of heads.
        mode: ``zero``, ``mean`` or ``resample`` (the reference for mean/resample is the evaluated data).
        format: prompt format preset.
        batch_size, n_boot, seed, threshold: as in :func:`nasa_lens.evaluate.evaluate`.
        pool_size: reference examples kept whole for resample ablation.
    """

    heads: str | list[Head] = "top:4"
    mode: str = "zero"
    format: str = "yes-no"
    batch_size: int = 16
    n_boot: int = 1000
    seed: int = 0
    threshold: float = 0.5
    pool_size: int = 32

    def __post_init__(self) -> None:
        if self.mode not in ABLATION_MODES:
            raise CausalError(f"unknown ablation mode {self.mode!r}; choose one of {list(ABLATION_MODES)}")
        if self.format not in _FORMATS:
            raise CausalError(f"unknown format {self.format!r}; choose one of {list(_FORMATS)}")
        _check_common(self.batch_size, self.n_boot, self.threshold)
        if self.mode == "resample" and self.pool_size < 2:
            raise CausalError(f"resample ablation needs pool_size >= 2, got {self.pool_size}")
        if isinstance(self.heads, str) and not self.heads.strip():
            raise CausalError("heads must be a head spec like top:4 or 18.4,20.1")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not isinstance(self.heads, str):
            d["heads"] = [list(h) for h in self.heads]
        return d


def _check_common(batch_size: int, n_boot: int, threshold: float) -> None:
    if batch_size < 1:
        raise CausalError(f"batch_size must be >= 1, got {batch_size}")
    if n_boot < 1:
        raise CausalError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < threshold < 1.0:
        raise CausalError(f"threshold must be in (0, 1), got {threshold}")


@dataclass
class AblationResult:
    """Metrics before and after ablating ``heads`` (``metrics.json`` of ``nasa-lens ablate``)."""

    before: EvalResult
    after: EvalResult
    heads: list[Head]
    mode: str
    config: dict[str, Any] = field(default_factory=dict)

    def delta(self) -> dict[str, float]:
        return {k: self.after.metrics[k] - self.before.metrics[k] for k in self.before.metrics}

    def to_json(self) -> dict[str, Any]:
        return {
            "before": self.before.metrics_json(),
            "after": self.after.metrics_json(),
            "delta": self.delta(),
            "heads": [list(h) for h in self.heads],
            "mode": self.mode,
            "config": self.config,
        }

    def to_dataframe(self) -> pd.DataFrame:
        """One row per metric: before, after, delta, and the after-run's 95% interval."""
        rows = []
        for k, v in self.before.metrics.items():
            lo, hi = self.after.ci.get(k, (float("nan"), float("nan")))
            rows.append({"metric": k, "before": v, "after": self.after.metrics[k], "delta": self.after.metrics[k] - v,
                         "after_ci_low": lo, "after_ci_high": hi})
        return pd.DataFrame(rows)

    def save(self, out_dir: str | Path) -> Path:
        """Write ``metrics.json`` and ``predictions.csv`` (per example: p_yes / logit diff before and after)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "metrics.json", self.to_json())
        b, a = self.before.to_dataframe(), self.after.to_dataframe()
        frame = b.rename(columns={"p_yes": "p_yes_before", "pred": "pred_before", "logit_diff": "logit_diff_before"})
        frame["p_yes_after"], frame["pred_after"], frame["logit_diff_after"] = a["p_yes"], a["pred"], a["logit_diff"]
        with atomic_path(out / "predictions.csv") as tmp:
            frame.to_csv(tmp, index=False)
        return out


def ablate(
    model: LoadedModel,
    dataset: Sequence[Any],
    config: AblationConfig | None = None,
    *,
    ranking: Any = None,
    reference: ZReference | None = None,
    progress: bool = True,
) -> AblationResult:
    """Evaluate ``dataset`` clean and with ``config.heads`` ablated (same batches, paired)."""
    cfg = config or AblationConfig()
    examples = list(dataset)
    if not examples:
        raise CausalError("cannot ablate on an empty dataset")
    rank = None
    if isinstance(cfg.heads, str) and cfg.heads.split(":")[0].strip() in ("top", "bottom"):
        rank = ranking_array(ranking, model)
    heads = parse_heads(cfg.heads, model.n_layers, model.n_heads, ranking=rank)
    fmt = PromptFormat.named(cfg.format)
    if cfg.mode != "zero" and reference is None:
        reference = collect_z_reference(model, examples, fmt, batch_size=cfg.batch_size, pool_size=cfg.pool_size, progress=progress)
    ablation = HeadAblation(tuple(heads), cfg.mode, reference, seed=cfg.seed)
    n = len(examples)
    p0, d0, p1, d1 = (np.full(n, np.nan) for _ in range(4))
    bar = tqdm(total=n, desc=f"ablate {len(heads)} heads ({cfg.mode})", disable=not progress, leave=False)
    for idx, batch in iter_batches(model, examples, fmt, cfg.batch_size):
        runner = _BatchRunner(model, batch)
        p0[idx], d0[idx] = _p_and_diff(runner.clean)
        p1[idx], d1[idx] = _p_and_diff(runner.pair(ablation.hooks(batch), ablation.first_layer))
        bar.update(len(idx))
    bar.close()
    labels = _labels(examples)
    common = dict(threshold=cfg.threshold, n_boot=cfg.n_boot, seed=cfg.seed, model=getattr(model, "name", ""),
                  dataset=str(getattr(dataset, "name", "")), format=fmt.label)
    before = result_from_predictions(_ids(examples), labels, p0, d0, **common)
    after = result_from_predictions(_ids(examples), labels, p1, d1, **common)
    return AblationResult(before, after, heads, cfg.mode, cfg.to_dict())


# ============================================================================================ ablation curve


@dataclass
class AblationCurveConfig:
    """The ablation curve: top-k NAS heads against random-k and bottom-k controls.

    Attributes:
        ks: head counts (strictly ascending, >= 1).
        mode: ``zero``, ``mean`` or ``resample`` (reference = the evaluated data).
        n_random_seeds: random head sets per k (0: no random control, no p-values).
        exclude_top_from_random: draw the random heads from outside the top-k (a cleaner control).
        metrics: which metrics the table reports (keys of :func:`vector_metrics`).
        n_boot: bootstrap draws (examples resampled; the same draw for the clean and ablated runs).
        n_perm: permutation draws for the top-k (and bottom-k) vs random p-value.
        seed, batch_size, threshold, format, pool_size: as usual.
    """

    ks: tuple[int, ...] = (1, 2, 4, 8, 16)
    mode: str = "zero"
    n_random_seeds: int = 3
    exclude_top_from_random: bool = True
    metrics: tuple[str, ...] = CURVE_METRICS
    n_boot: int = 1000
    n_perm: int = 1000
    seed: int = 0
    batch_size: int = 16
    threshold: float = 0.5
    format: str = "yes-no"
    pool_size: int = 32

    def __post_init__(self) -> None:
        self.ks = tuple(int(k) for k in self.ks)
        self.metrics = tuple(self.metrics)
        if not self.ks:
            raise CausalError("ks must list at least one head count")
        if any(k < 1 for k in self.ks):
            raise CausalError(f"every k must be >= 1, got ks={list(self.ks)}")
        if list(self.ks) != sorted(set(self.ks)):
            raise CausalError(f"ks must be strictly ascending, got {list(self.ks)}")
        if self.mode not in ABLATION_MODES:
            raise CausalError(f"unknown ablation mode {self.mode!r}; choose one of {list(ABLATION_MODES)}")
        if self.n_random_seeds < 0:
            raise CausalError(f"n_random_seeds must be >= 0, got {self.n_random_seeds}")
        unknown = [m for m in self.metrics if m not in _VECTOR_METRICS]
        if unknown:
            raise CausalError(f"unknown metrics {unknown}; choose from {list(_VECTOR_METRICS)}")
        if self.n_perm < 1:
            raise CausalError(f"n_perm must be >= 1, got {self.n_perm}")
        if self.format not in _FORMATS:
            raise CausalError(f"unknown format {self.format!r}; choose one of {list(_FORMATS)}")
        _check_common(self.batch_size, self.n_boot, self.threshold)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ks"], d["metrics"] = list(self.ks), list(self.metrics)
        return d


@dataclass
class AblationCurveResult:
    """Per-example outputs of every condition of an ablation curve, and the statistics table.

    ``outputs[key] = (p_yes, logit_diff)`` per example, keys ``"top/k=4"``, ``"bottom/k=4"``,
    ``"random/k=4/seed=1"``; ``heads[key]`` the ablated heads.
    """

    ids: list[str]
    labels: np.ndarray
    clean: tuple[np.ndarray, np.ndarray]
    outputs: dict[str, tuple[np.ndarray, np.ndarray]]
    heads: dict[str, list[Head]]
    config: dict[str, Any]
    table: pd.DataFrame
    model: str = ""
    dataset: str = ""
    seconds: float = float("nan")

    def to_dataframe(self) -> pd.DataFrame:
        """Long format, one row per (k, condition, seed, metric): ``value`` with its bootstrap ``ci_low`` /
        ``ci_high``, ``delta`` (vs the clean run) with ``delta_ci_low`` / ``delta_ci_high`` (paired), and
        ``p_value`` (top / bottom vs the random control; NaN elsewhere). ``condition`` is clean (k = 0),
        top, bottom, random (one row per seed) or random_mean (the seed average)."""
        return self.table.copy()

    def to_wide(self) -> pd.DataFrame:
        """One row per ablated head set: ``control, k, draw, <metric>...`` (control in none / top / bottom /
        random; ``draw`` the random seed), the layout of ``ablation.csv``."""
        t = self.table[self.table["condition"] != "random_mean"].copy()
        t["draw"] = t["seed"].fillna(-1).astype(int)
        wide = t.pivot(index=["condition", "k", "draw"], columns="metric", values="value").reset_index()
        wide.columns.name = None
        wide = wide.rename(columns={"condition": "control"})
        wide["control"] = wide["control"].replace({"clean": "none"})
        wide["draw"] = wide["draw"].where(wide["draw"] >= 0)
        order = {"none": 0, "top": 1, "bottom": 2, "random": 3}
        wide["_o"] = wide["control"].map(order)
        return wide.sort_values(["k", "_o", "draw"]).drop(columns="_o").reset_index(drop=True)

    def summary_table(self, metric: str = "yes_rate") -> pd.DataFrame:
        """Per k: the change in ``metric`` (with its 95% CI) for top / random (seed mean) / bottom, and the
        permutation p-value of top vs random."""
        t = self.table[self.table["metric"] == metric]
        rows = []
        for k in sorted(t.loc[t["k"] > 0, "k"].unique()):
            row: dict[str, Any] = {"k": int(k)}
            for cond in ("top", "random_mean", "bottom"):
                r = t[(t["k"] == k) & (t["condition"] == cond)]
                if len(r):
                    r = r.iloc[0]
                    row[f"{cond}_delta"] = r["delta"]
                    row[f"{cond}_ci"] = f"[{r['delta_ci_low']:+.3f}, {r['delta_ci_high']:+.3f}]"
            top = t[(t["k"] == k) & (t["condition"] == "top")]
            row["p_top_vs_random"] = float(top["p_value"].iloc[0]) if len(top) else float("nan")
            rows.append(row)
        return pd.DataFrame(rows)

    def save(self, out_dir: str | Path) -> Path:
        """Write ``curve.csv`` (long), ``ablation.csv`` (wide, :meth:`to_wide`), ``curve_examples.npz`` and
        ``curve.json``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "curve.csv") as tmp:
            self.table.to_csv(tmp, index=False)
        with atomic_path(out / "ablation.csv") as tmp:
            self.to_wide().to_csv(tmp, index=False)
        keys = list(self.outputs)
        with atomic_path(out / "curve_examples.npz") as tmp, open(tmp, "wb") as f:
            np.savez(
                f,
                labels=self.labels,
                clean=np.stack(self.clean),
                outputs=np.stack([np.stack(self.outputs[k]) for k in keys]) if keys else np.zeros((0, 2, len(self.ids))),
            )
        write_json(out / "curve.json", {
            "ids": self.ids, "keys": keys, "heads": {k: [list(h) for h in v] for k, v in self.heads.items()},
            "config": self.config, "model": self.model, "dataset": self.dataset, "seconds": self.seconds,
        })
        return out

    @classmethod
    def load(cls, out_dir: str | Path) -> AblationCurveResult:
        out = Path(out_dir)
        for name in ("curve.csv", "curve.json", "curve_examples.npz"):
            if not (out / name).is_file():
                raise FileNotFoundError(f"{out / name} not found: not an ablation-curve folder (AblationCurveResult.save)")
        meta = read_json(out / "curve.json")
        with np.load(out / "curve_examples.npz") as z:
            labels, clean, outputs = z["labels"], z["clean"], z["outputs"]
        return cls(
            ids=meta["ids"], labels=labels, clean=(clean[0], clean[1]),
            outputs={k: (outputs[i, 0], outputs[i, 1]) for i, k in enumerate(meta["keys"])},
            heads={k: [tuple(h) for h in v] for k, v in meta["heads"].items()},
            config=meta["config"], table=pd.read_csv(out / "curve.csv", keep_default_na=True).assign(
                heads=lambda t: t["heads"].fillna("")), model=meta.get("model", ""),
            dataset=meta.get("dataset", ""), seconds=float(meta.get("seconds") or float("nan")),
        )


def _curve_conditions(rank: np.ndarray, cfg: AblationCurveConfig, n_layers: int, n_heads: int) -> list[tuple[str, int, int, list[Head]]]:
    """``(condition, k, seed, heads)`` for every ablated head set (seed -1 for top / bottom)."""
    top_all = ranked_heads(rank, descending=True)
    bottom_all = ranked_heads(rank, descending=False)
    total = n_layers * n_heads
    out = []
    for k in cfg.ks:
        if k > total:
            raise CausalError(f"k={k} is more than the model's {total} heads")
        out.append(("top", k, -1, top_all[:k]))
        out.append(("bottom", k, -1, bottom_all[:k]))
        exclude = top_all[:k] if cfg.exclude_top_from_random and k <= total - k else []
        for s in range(cfg.n_random_seeds):
            out.append(("random", k, s, random_heads(k, n_layers, n_heads, seed=cfg.seed * 10_007 + s, exclude=exclude)))
    return out


def _key(condition: str, k: int, seed: int) -> str:
    return f"{condition}/k={k}" if seed < 0 else f"{condition}/k={k}/seed={seed}"


def ablation_curve(
    model: LoadedModel,
    dataset: Sequence[Any],
    ranking: Any,
    ks: Sequence[int] = (1, 2, 4, 8, 16),
    mode: str = "zero",
    n_random_seeds: int | None = None,
    *,
    config: AblationCurveConfig | None = None,
    fmt: PromptFormat | str | None = None,
    reference: ZReference | None = None,
    progress: bool = True,
    n_random: int | None = None,
    **options: Any,
) -> AblationCurveResult:
    """Ablate the top-k NAS heads for each k, beside k random heads (several seeds) and the k lowest-NAS heads.

    ``ranking``: a NASResult or a ``[layer, head]`` mean-NAS array. Either pass ``config`` or the fields as
    keywords (``ks``, ``mode``, ``n_random_seeds`` (alias ``n_random``), and ``options`` such as ``n_boot``,
    ``seed``, ``batch_size``, ``threshold``). ``fmt`` overrides ``config.format``.

    All conditions run on the same batches: per batch one clean forward (caching the residual stream),
    then one forward per head set, started at the set's first layer.
    """
    if config is None:
        n_seeds = n_random_seeds if n_random_seeds is not None else (n_random if n_random is not None else 3)
        config = AblationCurveConfig(ks=tuple(ks), mode=mode, n_random_seeds=n_seeds, **options)
    elif options:
        raise CausalError(f"pass either config or keyword options, not both (got {sorted(options)})")
    cfg = config
    rank = ranking_array(ranking, model)
    fmt_ = _format(fmt if fmt is not None else cfg.format)
    examples = list(dataset)
    if not examples:
        raise CausalError("cannot run an ablation curve on an empty dataset")
    labels = _labels(examples)
    if (labels < 0).any():
        raise CausalError("every example needs a gold label ('yes' or 'no') for the ablation curve")
    conds = _curve_conditions(rank, cfg, model.n_layers, model.n_heads)
    t0 = time.perf_counter()
    if cfg.mode != "zero" and reference is None:
        reference = collect_z_reference(model, examples, fmt_, batch_size=cfg.batch_size, pool_size=cfg.pool_size, progress=progress)
    ablations = {_key(c, k, s): HeadAblation(tuple(h), cfg.mode, reference, seed=cfg.seed) for c, k, s, h in conds}
    n = len(examples)
    clean = (np.full(n, np.nan), np.full(n, np.nan))
    outputs = {key: (np.full(n, np.nan), np.full(n, np.nan)) for key in ablations}
    bar = tqdm(total=n * (1 + len(ablations)), desc=f"ablation curve ({cfg.mode})", disable=not progress)
    for idx, batch in iter_batches(model, examples, fmt_, cfg.batch_size):
        runner = _BatchRunner(model, batch)
        clean[0][idx], clean[1][idx] = _p_and_diff(runner.clean)
        bar.update(len(idx))
        for key, ab in ablations.items():
            p, d = _p_and_diff(runner.pair(ab.hooks(batch), ab.first_layer))
            outputs[key][0][idx], outputs[key][1][idx] = p, d
            bar.update(len(idx))
    bar.close()
    seconds = time.perf_counter() - t0
    heads = {_key(c, k, s): list(h) for c, k, s, h in conds}
    table = _curve_table(labels, clean, outputs, heads, conds, cfg)
    return AblationCurveResult(
        ids=_ids(examples), labels=labels, clean=clean, outputs=outputs, heads=heads, config=cfg.to_dict(),
        table=table, model=getattr(model, "name", ""), dataset=str(getattr(dataset, "name", "")), seconds=seconds,
    )


def _curve_table(
    labels: np.ndarray,
    clean: tuple[np.ndarray, np.ndarray],
    outputs: dict[str, tuple[np.ndarray, np.ndarray]],
    heads: dict[str, list[Head]],
    conds: list[tuple[str, int, int, list[Head]]],
    cfg: AblationCurveConfig,
) -> pd.DataFrame:
    n = len(labels)
    thr = cfg.threshold
    rng = np.random.default_rng(cfg.seed)
    idx = rng.integers(0, n, (cfg.n_boot, n))
    point = lambda p, d: bias_metrics(labels, p, thr, d)  # noqa: E731 - the one metric definition
    boot = lambda p, d: vector_metrics(labels[idx], p[idx], d[idx], thr)  # noqa: E731
    clean_point, clean_boot = point(*clean), boot(*clean)
    rows: list[dict[str, Any]] = []

    def add(k: int, condition: str, seed: float, head_str: str, value: dict[str, float], samples: dict[str, np.ndarray],
            p_values: dict[str, float] | None = None) -> None:
        for m in cfg.metrics:
            lo, hi = _quantiles(samples[m])
            dlo, dhi = _quantiles(samples[m] - clean_boot[m])
            rows.append({
                "k": k, "condition": condition, "seed": seed, "metric": m, "value": value[m], "ci_low": lo, "ci_high": hi,
                "delta": value[m] - clean_point[m], "delta_ci_low": dlo, "delta_ci_high": dhi,
                "p_value": (p_values or {}).get(m, float("nan")), "n": n, "heads": head_str,
            })

    add(0, "clean", float("nan"), "", clean_point, clean_boot)
    point_cache = {key: point(*outputs[key]) for key in outputs}
    boot_cache = {key: boot(*outputs[key]) for key in outputs}
    for k in cfg.ks:
        rand_keys = [_key("random", k, s) for s in range(cfg.n_random_seeds)]
        for cond in ("top", "bottom"):
            key = _key(cond, k, -1)
            pv = _perm_pvalues(labels, outputs[key], [outputs[r] for r in rand_keys], cfg, rng) if rand_keys else None
            add(k, cond, float("nan"), ",".join(format_head(h) for h in heads[key]), point_cache[key], boot_cache[key], pv)
        for s, key in enumerate(rand_keys):
            add(k, "random", float(s), ",".join(format_head(h) for h in heads[key]), point_cache[key], boot_cache[key])
        if rand_keys:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN metric (e.g. precision with no "yes")
                mean_point = {m: float(np.nanmean([point_cache[r][m] for r in rand_keys])) for m in cfg.metrics}
                mean_boot = {m: np.nanmean(np.stack([boot_cache[r][m] for r in rand_keys]), axis=0) for m in cfg.metrics}
            add(k, "random_mean", float("nan"), "", mean_point, mean_boot)
    return pd.DataFrame(rows)


def _perm_pvalues(
    labels: np.ndarray,
    tested: tuple[np.ndarray, np.ndarray],
    randoms: list[tuple[np.ndarray, np.ndarray]],
    cfg: AblationCurveConfig,
    rng: np.random.Generator,
) -> dict[str, float]:
    """Two-sided permutation p-value of ``T = metric(tested) - mean_s metric(random_s)``.

    Null: per example, the outputs under the tested head set and under the random head sets are
    exchangeable (the tested heads are no more special than random ones). Each draw permutes, per example,
    the example's outputs among the 1 + S conditions; ``p = (1 + #{|T*| >= |T|}) / (1 + #valid draws)``.
    """
    P = np.stack([tested[0]] + [r[0] for r in randoms])  # [C, n]
    D = np.stack([tested[1]] + [r[1] for r in randoms])
    C, n = P.shape
    perm = np.argsort(rng.random((cfg.n_perm, C, n)), axis=1)
    cols = np.arange(n)[None, None, :]
    Pp, Dp = P[perm, cols], D[perm, cols]  # [draw, C, n]
    obs = vector_metrics(labels[None], P, D, cfg.threshold)
    null = vector_metrics(labels[None, None], Pp, Dp, cfg.threshold)
    out = {}
    for m in cfg.metrics:
        t_obs = obs[m][0] - np.mean(obs[m][1:])
        t_null = null[m][:, 0] - null[m][:, 1:].mean(1)
        valid = ~np.isnan(t_null)
        if np.isnan(t_obs) or not valid.any():
            out[m] = float("nan")
            continue
        tol = 1e-12 + abs(t_obs) * 1e-9
        hits = int((np.abs(t_null[valid]) >= abs(t_obs) - tol).sum())
        out[m] = (1 + hits) / (1 + int(valid.sum()))
    return out


# ============================================================================================ effect sweep


@dataclass
class EffectSweepConfig:
    """Per-head ablation effect on the mean logit difference ``logit(Yes) - logit(No)``.

    Attributes:
        method: ``exact`` (ablate each head alone) or ``attribution`` (gradient approximation).
        mode: the ablation the effect is of: ``zero``, ``mean`` or ``resample``.
        batch_size, format, pool_size: as usual.
    """

    method: str = "exact"
    mode: str = "zero"
    batch_size: int = 16
    format: str = "yes-no"
    pool_size: int = 32

    def __post_init__(self) -> None:
        if self.method not in ("exact", "attribution"):
            raise CausalError(f"unknown sweep method {self.method!r}; choose 'exact' or 'attribution'")
        if self.mode not in ABLATION_MODES:
            raise CausalError(f"unknown ablation mode {self.mode!r}; choose one of {list(ABLATION_MODES)}")
        if self.batch_size < 1:
            raise CausalError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.format not in _FORMATS:
            raise CausalError(f"unknown format {self.format!r}; choose one of {list(_FORMATS)}")


@dataclass
class EffectSweepResult:
    """``per_example[example, layer, head]``: change of the logit difference when the head is ablated
    (positive = the head pushes towards "No": removing it raises logit(Yes) - logit(No))."""

    per_example: Float[np.ndarray, "example layer head"]
    method: str
    mode: str
    seconds: float
    ids: list[str] = field(default_factory=list)
    clean_logit_diff: np.ndarray | None = None
    model: str = ""
    dataset: str = ""

    @property
    def effects(self) -> Float[np.ndarray, "layer head"]:
        return self.per_example.mean(0)

    @property
    def stderr(self) -> Float[np.ndarray, "layer head"]:
        n = self.per_example.shape[0]
        return self.per_example.std(0, ddof=1) / math.sqrt(n) if n > 1 else np.full(self.effects.shape, np.nan)

    @property
    def n(self) -> int:
        return int(self.per_example.shape[0])

    def top_heads(self, k: int = 10) -> list[Head]:
        """The k heads whose ablation raises the logit difference most."""
        return ranked_heads(self.effects, descending=True)[:k]

    def to_dataframe(self) -> pd.DataFrame:
        """One row per head: ``layer, head, head_name, effect, stderr, ci_low, ci_high`` (normal 95%),
        ``rank`` (1 = largest effect), ``method, mode, n``."""
        L, H = self.effects.shape
        eff, se = self.effects, self.stderr
        order = {h: i + 1 for i, h in enumerate(ranked_heads(eff, descending=True))}
        rows = [
            {"layer": layer, "head": h, "head_name": f"{layer}.{h}", "effect": eff[layer, h], "stderr": se[layer, h],
             "ci_low": eff[layer, h] - 1.96 * se[layer, h], "ci_high": eff[layer, h] + 1.96 * se[layer, h],
             "rank": order[(layer, h)], "method": self.method, "mode": self.mode, "n": self.n}
            for layer in range(L) for h in range(H)
        ]
        return pd.DataFrame(rows)

    def save(self, out_dir: str | Path, name: str | None = None) -> Path:
        """Write ``<name>.npz`` and ``<name>.csv`` (default name ``effects_<method>``)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stem = name or f"effects_{self.method}"
        with atomic_path(out / f"{stem}.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, per_example=self.per_example,
                     clean_logit_diff=self.clean_logit_diff if self.clean_logit_diff is not None else np.zeros(0))
        write_json(out / f"{stem}.json", {"method": self.method, "mode": self.mode, "seconds": self.seconds, "ids": self.ids,
                                          "model": self.model, "dataset": self.dataset})
        with atomic_path(out / f"{stem}.csv") as tmp:
            self.to_dataframe().to_csv(tmp, index=False)
        return out

    @classmethod
    def load(cls, out_dir: str | Path, name: str = "effects_exact") -> EffectSweepResult:
        out = Path(out_dir)
        if not (out / f"{name}.npz").is_file():
            raise FileNotFoundError(f"{out / (name + '.npz')} not found: not an effect-sweep result (EffectSweepResult.save)")
        meta = read_json(out / f"{name}.json")
        with np.load(out / f"{name}.npz") as z:
            per, clean = z["per_example"], z["clean_logit_diff"]
        return cls(per_example=per, method=meta["method"], mode=meta["mode"], seconds=float(meta["seconds"]), ids=meta["ids"],
                   clean_logit_diff=clean if len(clean) else None, model=meta.get("model", ""), dataset=meta.get("dataset", ""))


def effect_sweep(
    model: LoadedModel,
    dataset: Sequence[Any],
    config: EffectSweepConfig | None = None,
    *,
    reference: ZReference | None = None,
    fmt: PromptFormat | str | None = None,
    progress: bool = True,
) -> EffectSweepResult:
    """Per-head ablation effect on the logit difference, by ``config.method`` (see :class:`EffectSweepConfig`)."""
    cfg = config or EffectSweepConfig()
    fmt_ = _format(fmt if fmt is not None else cfg.format)
    examples = list(dataset)
    if not examples:
        raise CausalError("cannot sweep an empty dataset")
    if cfg.mode != "zero" and reference is None:
        reference = collect_z_reference(model, examples, fmt_, batch_size=cfg.batch_size, pool_size=cfg.pool_size, progress=progress)
    fn = exact_effects if cfg.method == "exact" else attribution_effects
    return fn(model, examples, mode=cfg.mode, reference=reference, fmt=fmt_, batch_size=cfg.batch_size, progress=progress,
              dataset_name=str(getattr(dataset, "name", "")))


def exact_effects(
    model: LoadedModel,
    examples: Sequence[Any],
    *,
    mode: str = "zero",
    reference: ZReference | None = None,
    fmt: PromptFormat | None = None,
    batch_size: int = 16,
    progress: bool = True,
    dataset_name: str = "",
) -> EffectSweepResult:
    """Ablate every head alone (one forward per head and batch, started at the head's layer)."""
    examples = list(examples)
    L, H = model.n_layers, model.n_heads
    n = len(examples)
    per = np.full((n, L, H), np.nan)
    clean_d = np.full(n, np.nan)
    t0 = time.perf_counter()
    ablations = {(layer, h): HeadAblation(((layer, h),), mode, reference) for layer in range(L) for h in range(H)}
    bar = tqdm(total=n * L * H, desc=f"exact sweep ({mode})", disable=not progress)
    for idx, batch in iter_batches(model, examples, fmt, batch_size):
        runner = _BatchRunner(model, batch)
        d0 = (runner.clean[:, 0] - runner.clean[:, 1]).cpu().double().numpy()
        clean_d[idx] = d0
        for (layer, h), ab in ablations.items():
            pair = runner.pair(ab.hooks(batch), layer)
            per[idx, layer, h] = (pair[:, 0] - pair[:, 1]).cpu().double().numpy() - d0
            bar.update(len(idx))
    bar.close()
    return EffectSweepResult(per, "exact", mode, time.perf_counter() - t0, _ids(examples), clean_d,
                             getattr(model, "name", ""), dataset_name)


def attribution_effects(
    model: LoadedModel,
    examples: Sequence[Any],
    *,
    mode: str = "zero",
    reference: ZReference | None = None,
    fmt: PromptFormat | None = None,
    batch_size: int = 16,
    progress: bool = True,
    dataset_name: str = "",
) -> EffectSweepResult:
    """Attribution patching: per batch one forward with gradients w.r.t. every ``hook_z`` (not the weights)
    and one backward of ``sum(logit_yes - logit_no)``; ``effect[b, l, h] = sum_{pos, d} (z_abl - z) * grad``.

    The model's parameters keep ``requires_grad=False``: the first ``hook_z`` is made a leaf that requires
    grad, later ones are in its graph, and ``torch.autograd.grad`` reads the gradients without touching any
    ``.grad``. Padding positions get zero gradient (they are masked out as keys)."""
    examples = list(examples)
    bridge = _bridge(model)
    L, H = model.n_layers, model.n_heads
    n = len(examples)
    per = np.full((n, L, H), np.nan)
    clean_d = np.full(n, np.nan)
    t0 = time.perf_counter()
    probe = HeadAblation(((0, 0),), mode, reference)  # validates mode / reference
    bar = tqdm(total=n, desc=f"attribution sweep ({mode})", disable=not progress)
    for idx, batch in iter_batches(model, examples, fmt, batch_size):
        zs: dict[int, Tensor] = {}

        def grab(z: Tensor, hook: Any) -> Tensor:
            if not z.requires_grad:
                z = z.detach().requires_grad_(True)
            zs[int(hook.name.split(".")[1])] = z
            return z

        hooks = [(z_hook_name(layer), grab) for layer in range(L)]
        if "ln_final.hook_out" in bridge.hook_dict:
            hooks.append(_LAST_ONLY)
        with torch.enable_grad():
            logits = bridge.run_with_hooks(batch.input_ids, fwd_hooks=hooks, **batch.forward_kwargs())
            pair = logits[:, -1][:, [batch.answer_yes_id, batch.answer_no_id]].float()
            metric = (pair[:, 0] - pair[:, 1]).sum()
            grads = torch.autograd.grad(metric, [zs[layer] for layer in range(L)])
        clean_d[idx] = (pair[:, 0] - pair[:, 1]).detach().cpu().double().numpy()
        z = torch.stack([zs[layer].detach() for layer in range(L)])  # [layer, b, pos, h, d]
        g = torch.stack([gr.detach() for gr in grads])
        target = _ablated_z(probe, z, batch, reference, mode)
        mask = batch.attention_mask.to(z.dtype)
        eff = einops.einsum((target - z) * g, mask, "layer b pos h d, b pos -> b layer h")
        per[idx] = eff.cpu().double().numpy()
        bar.update(len(idx))
        del zs, grads, logits
    bar.close()
    return EffectSweepResult(per, "attribution", mode, time.perf_counter() - t0, _ids(examples), clean_d,
                             getattr(model, "name", ""), dataset_name)


def _ablated_z(probe: HeadAblation, z: Tensor, batch: PromptBatch, reference: ZReference | None, mode: str) -> Tensor:
    """What every head's ``z`` would be ablated to, ``[layer, b, pos, h, d]``."""
    if mode == "zero":
        return torch.zeros_like(z)
    assert reference is not None
    S = z.shape[2]
    if mode == "mean":
        m = torch.stack([reference.positional_mean(layer, S) for layer in range(z.shape[0])])  # [layer, pos, h, d]
        return einops.repeat(m, "layer pos h d -> layer b pos h d", b=z.shape[1]).to(z)
    sources = reference.resample_sources(batch.ids, batch.attention_mask.sum(-1).tolist(), probe.seed)
    return torch.stack([reference.resampled(layer, sources, S) for layer in range(z.shape[0])]).to(z)


def rank_correlation(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Spearman and Pearson correlation (with p-values) of two same-shaped arrays, NaNs dropped."""
    from scipy import stats

    a, b = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    if a.shape != b.shape:
        raise CausalError(f"cannot correlate arrays of {a.shape} and {b.shape} elements")
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok], b[ok]
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return {"spearman": float("nan"), "spearman_p": float("nan"), "pearson": float("nan"), "pearson_p": float("nan"), "n": int(len(a))}
    s = stats.spearmanr(a, b)
    p = stats.pearsonr(a, b)
    return {"spearman": float(s.statistic), "spearman_p": float(s.pvalue), "pearson": float(p.statistic),
            "pearson_p": float(p.pvalue), "n": int(len(a))}


def sweep_correlation(a: EffectSweepResult, b: EffectSweepResult, top_k: int = 10) -> dict[str, float]:
    """How well two sweeps agree: rank correlation of the per-head effects, the overlap of their top-k heads
    (by effect), and the time ratio ``a.seconds / b.seconds``."""
    if a.effects.shape != b.effects.shape:
        raise CausalError(f"sweeps of different shapes: {a.effects.shape} vs {b.effects.shape}")
    out = rank_correlation(a.effects, b.effects)
    ta, tb = set(a.top_heads(top_k)), set(b.top_heads(top_k))
    out[f"top{top_k}_overlap"] = len(ta & tb) / top_k
    out["seconds_a"], out["seconds_b"] = a.seconds, b.seconds
    out["time_ratio"] = a.seconds / b.seconds if b.seconds > 0 else float("nan")
    return out


def nas_effect_table(ranking: Any, sweep: EffectSweepResult) -> pd.DataFrame:
    """One row per head: ``layer, head, head_name, nas, nas_rank, effect, stderr, effect_rank``."""
    nas = ranking_array(ranking)
    if nas.shape != sweep.effects.shape:
        raise CausalError(f"NAS ranking {nas.shape} and effect sweep {sweep.effects.shape} differ in shape")
    frame = sweep.to_dataframe()[["layer", "head", "head_name", "effect", "stderr", "rank"]].rename(columns={"rank": "effect_rank"})
    nas_rank = {h: i + 1 for i, h in enumerate(ranked_heads(nas, descending=True))}
    frame.insert(3, "nas", [nas[r.layer, r.head] for r in frame.itertuples()])
    frame.insert(4, "nas_rank", [nas_rank[(r.layer, r.head)] for r in frame.itertuples()])
    return frame


# ============================================================================================ patching


@dataclass
class PairSet:
    """Counterfactual pairs: ``clean[i]`` (rendered with ``clean_fmt``) against ``corrupted[i]`` (with
    ``corrupted_fmt``); every pair has the same token length."""

    clean: list[Any]
    corrupted: list[Any]
    clean_fmt: PromptFormat
    corrupted_fmt: PromptFormat
    kind: str

    def __post_init__(self) -> None:
        if len(self.clean) != len(self.corrupted):
            raise CausalError(f"{len(self.clean)} clean but {len(self.corrupted)} corrupted examples")
        if not self.clean:
            raise CausalError(f"no {self.kind} pairs to patch")

    def __len__(self) -> int:
        return len(self.clean)

    @property
    def ids(self) -> list[str]:
        return [f"{c}|{x}" for c, x in zip(_ids(self.clean), _ids(self.corrupted))]


def swap_pairs(examples: Sequence[Any], fmt: PromptFormat | None = None) -> PairSet:
    """Each question in ``fmt`` ("Yes or No", clean) against itself with the candidates swapped ("No or Yes",
    corrupted)."""
    fmt = fmt or PromptFormat()
    ex = list(examples)
    return PairSet(ex, list(ex), fmt, fmt.swapped(), "swap")


def _template_key(example: Any) -> str:
    """Examples of one generator share the id up to the trailing number (``arithmetic-d2-0007``)."""
    import re

    return re.sub(r"[-_]?\d+$", "", str(getattr(example, "id", "")))


def label_pairs(model: LoadedModel, examples: Sequence[Any], fmt: PromptFormat | None = None) -> PairSet:
    """Pairs of questions with opposite gold labels from the same generator/template (id prefix) and the same
    token length: clean = the "yes" question, corrupted = the "no" one (each used once, in dataset order).
    When no id prefix is shared by two examples (e.g. a real dataset), only the token length is matched."""
    fmt = fmt or PromptFormat()
    ex = list(examples)
    keys = [_template_key(e) for e in ex]
    shared = {k for k in keys if keys.count(k) > 1}
    buckets: dict[tuple[str, int], dict[str, list[Any]]] = {}
    for e, key in zip(ex, keys):
        label = getattr(e, "label", None)
        if label not in ("yes", "no"):
            continue
        length = build_batch(model, [e], fmt).seq_len
        buckets.setdefault((key if key in shared else "", length), {"yes": [], "no": []})[label].append(e)
    clean, corrupted = [], []
    for b in buckets.values():
        for y, n_ in zip(b["yes"], b["no"]):
            clean.append(y)
            corrupted.append(n_)
    if not clean:
        raise CausalError(
            "no label pairs: no two examples of the same generator have the same token length and opposite labels "
            f"(in {len(ex)} examples); use more examples or --pairs swap"
        )
    return PairSet(clean, corrupted, fmt, fmt, "label")


@dataclass
class PatchingResult:
    """Per-pair logit differences: ``patched[pair, layer, head]`` (clean activation patched into the
    corrupted run), ``clean[pair]``, ``corrupted[pair]``."""

    patched: Float[np.ndarray, "pair layer head"]
    clean: np.ndarray
    corrupted: np.ndarray
    what: str
    kind: str
    ids: list[str] = field(default_factory=list)
    n_boot: int = 1000
    n_perm: int = 1000
    seed: int = 0
    model: str = ""
    dataset: str = ""

    @property
    def n(self) -> int:
        return int(self.patched.shape[0])

    @property
    def gap(self) -> float:
        """``mean(clean) - mean(corrupted)``: the denominator of the normalised effect."""
        return float(self.clean.mean() - self.corrupted.mean())

    def normalized(self) -> Float[np.ndarray, "layer head"]:
        """``(mean patched - mean corrupted) / (mean clean - mean corrupted)``: 0 = no change, 1 = the clean
        logit difference restored (TransformerLens' normalisation, on batch means)."""
        return (self.patched.mean(0) - self.corrupted.mean()) / self.gap

    def effect(self) -> Float[np.ndarray, "pair layer head"]:
        """``patched - corrupted`` per pair (unnormalised)."""
        return self.patched - self.corrupted[:, None, None]

    def _boot(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        idx = rng.integers(0, self.n, (self.n_boot, self.n))
        num = self.patched[idx].mean(1) - self.corrupted[idx].mean(1)[:, None, None]
        den = (self.clean[idx].mean(1) - self.corrupted[idx].mean(1))[:, None, None]
        with np.errstate(all="ignore"):
            norm = num / den
        return norm, den[:, 0, 0]

    def p_values(self) -> Float[np.ndarray, "layer head"]:
        """Sign-flip permutation p-value that the mean per-pair effect is zero (TransformerLens'
        ``sign_flip_permutation_pvalue``)."""
        from transformer_lens.utilities.statistics import derive_generator, sign_flip_permutation_pvalue

        eff = torch.as_tensor(einops.rearrange(self.effect(), "pair layer head -> layer head pair"), dtype=torch.float64)
        if self.n < 2:
            return np.full(eff.shape[:2], np.nan)
        return sign_flip_permutation_pvalue(eff, dim=-1, n_permutations=self.n_perm, generator=derive_generator(self.seed, "patch")).numpy()

    def to_dataframe(self) -> pd.DataFrame:
        """One row per head: ``normalized`` with its bootstrap ``ci_low`` / ``ci_high`` (pairs resampled),
        ``effect`` (mean patched - corrupted logit diff) with ``effect_stderr``, ``p_value``, and the run's
        ``clean_mean`` / ``corrupted_mean``."""
        norm = self.normalized()
        boot, _ = self._boot()
        eff = self.effect()
        se = eff.std(0, ddof=1) / math.sqrt(self.n) if self.n > 1 else np.full(norm.shape, np.nan)
        pv = self.p_values()
        L, H = norm.shape
        rows = []
        for layer in range(L):
            for h in range(H):
                lo, hi = _quantiles(boot[:, layer, h])
                rows.append({"layer": layer, "head": h, "head_name": f"{layer}.{h}", "normalized": norm[layer, h],
                             "ci_low": lo, "ci_high": hi, "effect": eff[:, layer, h].mean(), "effect_stderr": se[layer, h],
                             "p_value": pv[layer, h], "clean_mean": self.clean.mean(), "corrupted_mean": self.corrupted.mean(),
                             "what": self.what, "pairs": self.kind, "n": self.n})
        return pd.DataFrame(rows)

    def summary(self) -> str:
        _, den = self._boot()
        lo, hi = _quantiles(den)
        top = self.to_dataframe().sort_values("normalized", ascending=False).head(5)
        heads = ", ".join(f"{r.head_name} {r.normalized:+.2f}" for r in top.itertuples())
        return (f"{self.kind} pairs (n={self.n}), patching {self.what}: clean logit diff {self.clean.mean():+.3f}, corrupted "
                f"{self.corrupted.mean():+.3f}, gap {self.gap:+.3f} [95% CI {lo:+.3f}, {hi:+.3f}]; top heads: {heads}")

    def save(self, out_dir: str | Path) -> Path:
        """Write ``patching.csv`` (:meth:`to_dataframe`), ``patching.npz`` and ``patching.json``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "patching.csv") as tmp:
            self.to_dataframe().to_csv(tmp, index=False)
        with atomic_path(out / "patching.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, patched=self.patched, clean=self.clean, corrupted=self.corrupted)
        write_json(out / "patching.json", {"what": self.what, "kind": self.kind, "ids": self.ids, "n_boot": self.n_boot,
                                           "n_perm": self.n_perm, "seed": self.seed, "model": self.model, "dataset": self.dataset,
                                           "gap": self.gap})
        return out

    @classmethod
    def load(cls, out_dir: str | Path) -> PatchingResult:
        out = Path(out_dir)
        if not (out / "patching.npz").is_file():
            raise FileNotFoundError(f"{out / 'patching.npz'} not found: not a patching result (PatchingResult.save)")
        meta = read_json(out / "patching.json")
        with np.load(out / "patching.npz") as z:
            arrays = {k: z[k] for k in z.files}
        return cls(arrays["patched"], arrays["clean"], arrays["corrupted"], meta["what"], meta["kind"], meta["ids"],
                   meta["n_boot"], meta["n_perm"], meta["seed"], meta.get("model", ""), meta.get("dataset", ""))


PatchSetter = Callable[[Tensor, Sequence[int], Tensor], Tensor]


def generic_head_patch(
    model: LoadedModel,
    pairs: PairSet,
    hook_name: Callable[[int], str],
    patch_setter: PatchSetter,
    *,
    what: str,
    heads: Sequence[Head] | None = None,
    batch_size: int = 16,
    progress: bool = True,
    n_boot: int = 1000,
    n_perm: int = 1000,
    seed: int = 0,
) -> PatchingResult:
    """Patch each head's activation ``hook_name(layer)`` from the clean run into the corrupted run, one head
    at a time, and record the logit difference ``logit(Yes) - logit(No)`` at the last position.

    The same shape as :func:`transformer_lens.patching.generic_activation_patch` (and its patch setters
    ``layer_head_vector_patch_setter`` / ``layer_head_pattern_patch_setter`` are used as they are), but not
    that function itself: it calls ``model.run_with_hooks(corrupted_tokens, fwd_hooks=...)`` with no
    ``attention_mask``, so on a left-padded batch of prompts of different lengths the padding is attended to
    and the logits are wrong (a TransformerBridge does not infer the mask from pad tokens; SmolLM2's pad
    token is ``<|im_end|>``, which also occurs inside its chat template). It also reruns the whole model for
    every head. On an *unpadded* batch it works with a TransformerBridge and agrees with this function
    (checked in the tests). Here each pair batch runs with its mask, pairs are batched by length, and the
    patched forward starts at the head's layer from the cached corrupted residual.

    Heads not in ``heads`` (default: all) are NaN in the result.
    """
    L, H = model.n_layers, model.n_heads
    todo = list(heads) if heads is not None else [(layer, h) for layer in range(L) for h in range(H)]
    check_heads(model, todo)
    n = len(pairs)
    patched = np.full((n, L, H), np.nan)
    clean_d, corr_d = np.full(n, np.nan), np.full(n, np.nan)
    layers = sorted({layer for layer, _ in todo})
    names = {hook_name(layer) for layer in layers}
    bridge = _bridge(model)
    order = sorted(range(n), key=lambda i: len(str(getattr(pairs.clean[i], "question", pairs.clean[i]))))
    bar = tqdm(total=n * len(todo), desc=f"patch {what} ({pairs.kind})", disable=not progress)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        cb = build_batch(model, [pairs.clean[i] for i in idx], pairs.clean_fmt)
        xb = build_batch(model, [pairs.corrupted[i] for i in idx], pairs.corrupted_fmt)
        if cb.input_ids.shape != xb.input_ids.shape or not torch.equal(cb.attention_mask, xb.attention_mask):
            lengths = cb.attention_mask.sum(-1) != xb.attention_mask.sum(-1)
            bad = [pairs.ids[idx[r]] for r in torch.nonzero(lengths).flatten().tolist()] or pairs.ids[idx[0]: idx[0] + 1]
            raise CausalError(f"counterfactual pairs must have the same token length; these do not: {bad}")
        with torch.no_grad():
            logits, cache = bridge.run_with_cache(cb.input_ids, names_filter=lambda nm: nm in names, **cb.forward_kwargs())
        c_pair = logits[:, -1][:, [cb.answer_yes_id, cb.answer_no_id]].float()
        clean_act = {nm: cache[nm] for nm in names}
        del logits, cache
        runner = _BatchRunner(model, xb)
        clean_d[idx] = (c_pair[:, 0] - c_pair[:, 1]).cpu().double().numpy()
        corr_d[idx] = (runner.clean[:, 0] - runner.clean[:, 1]).cpu().double().numpy()
        for layer, h in todo:
            src = clean_act[hook_name(layer)]

            def hook(act: Tensor, hook: Any = None, index: list[int] = [layer, h], src: Tensor = src) -> Tensor:  # noqa: B006
                return patch_setter(act.clone(), index, src)

            pair = runner.pair([(hook_name(layer), hook)], layer)
            patched[idx, layer, h] = (pair[:, 0] - pair[:, 1]).cpu().double().numpy()
            bar.update(len(idx))
    bar.close()
    return PatchingResult(patched, clean_d, corr_d, what, pairs.kind, pairs.ids, n_boot, n_perm, seed, getattr(model, "name", ""))


def patch_head_outputs(model: LoadedModel, pairs: PairSet, **kwargs: Any) -> PatchingResult:
    """Per-head output patching on ``hook_z`` (all positions), TransformerLens' ``layer_head_vector_patch_setter``."""
    from transformer_lens.patching import layer_head_vector_patch_setter

    return generic_head_patch(model, pairs, z_hook_name, layer_head_vector_patch_setter, what="z", **kwargs)


def patch_head_patterns(model: LoadedModel, pairs: PairSet, **kwargs: Any) -> PatchingResult:
    """Per-head attention-pattern patching on ``hook_pattern`` (all query rows), TransformerLens'
    ``layer_head_pattern_patch_setter``."""
    from transformer_lens.patching import layer_head_pattern_patch_setter

    return generic_head_patch(model, pairs, pattern_hook_name, layer_head_pattern_patch_setter, what="pattern", **kwargs)


@dataclass
class PatchingConfig:
    """Activation patching on counterfactual pairs (``nasa-lens patch``).

    Attributes:
        pairs: ``swap`` (the same question, candidates in the other order) or ``label`` (two questions of one
            generator with the same token length and opposite gold labels).
        what: ``z`` (head output) or ``pattern`` (attention pattern).
        max_pairs: use at most this many pairs (None: all).
        format, batch_size, n_boot, n_perm, seed: as usual.
    """

    pairs: str = "swap"
    what: str = "z"
    max_pairs: int | None = None
    format: str = "yes-no"
    batch_size: int = 16
    n_boot: int = 1000
    n_perm: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.pairs not in ("swap", "label"):
            raise CausalError(f"unknown pairs {self.pairs!r}; choose 'swap' or 'label'")
        if self.what not in ("z", "pattern"):
            raise CausalError(f"unknown patch target {self.what!r}; choose 'z' or 'pattern'")
        if self.max_pairs is not None and self.max_pairs < 1:
            raise CausalError(f"max_pairs must be >= 1 (or None), got {self.max_pairs}")
        if self.format not in _FORMATS:
            raise CausalError(f"unknown format {self.format!r}; choose one of {list(_FORMATS)}")
        _check_common(self.batch_size, self.n_boot, 0.5)


def patch_heads(model: LoadedModel, dataset: Sequence[Any], config: PatchingConfig | None = None, *, progress: bool = True) -> PatchingResult:
    """Build the pairs ``config.pairs`` from ``dataset`` and patch every head's ``config.what``."""
    cfg = config or PatchingConfig()
    fmt = PromptFormat.named(cfg.format)
    examples = list(dataset)
    pairs = swap_pairs(examples, fmt) if cfg.pairs == "swap" else label_pairs(model, examples, fmt)
    if cfg.max_pairs is not None and len(pairs) > cfg.max_pairs:
        pairs = PairSet(pairs.clean[: cfg.max_pairs], pairs.corrupted[: cfg.max_pairs], pairs.clean_fmt, pairs.corrupted_fmt, pairs.kind)
    fn = patch_head_outputs if cfg.what == "z" else patch_head_patterns
    result = fn(model, pairs, batch_size=cfg.batch_size, progress=progress, n_boot=cfg.n_boot, n_perm=cfg.n_perm, seed=cfg.seed)
    result.dataset = str(getattr(dataset, "name", ""))
    return result

