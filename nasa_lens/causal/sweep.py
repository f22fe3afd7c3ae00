"""Effect sweeps: the effect of ablating each head alone on the mean logit difference
``logit(Yes) - logit(No)``, exactly (one ablated forward per head, started at the head's layer) or by
attribution patching (one forward + one backward for all heads); :func:`sweep_correlation` compares the two
and :func:`nas_effect_table` puts NAS beside the causal effect."""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import einops
import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from nasa_lens.heads import Head, ranked_heads
from nasa_lens.interventions import HeadAblation, ZReference, bridge_of, collect_z_reference
from nasa_lens.io import atomic_path, read_json, write_json
from nasa_lens.prompts import PromptBatch, PromptFormat, iter_batches
from nasa_lens.vocab import z_hook_name

from nasa_lens.causal.config import CausalError, EffectSweepConfig
from nasa_lens.causal.runner import _LAST_ONLY, _BatchRunner, _format, _ids, ranking_array

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel

logger = logging.getLogger(__name__)


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
    bridge = bridge_of(model)
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
