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

from nasa_lens.heads import Head, parse_heads, ranked_heads
from nasa_lens.interventions import HeadAblation, ZReference, bridge_of, collect_z_reference, knockout_query_mask
from nasa_lens.io import atomic_path, read_json, write_json
from nasa_lens.prompts import PromptBatch, PromptFormat, iter_batches
from nasa_lens.vocab import (
    SWEEP_EFFECTS_FILE,
    SWEEP_EXAMPLES_FILE,
    SWEEP_META_FILE,
    InputFileNotFoundError,
    z_hook_name,
)

from nasa_lens.causal.config import CausalError, EffectSweepConfig
from nasa_lens.causal.runner import LAST_ONLY, BatchRunner, example_ids, ranking_array

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
    positions: str = "all"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def effects(self) -> Float[np.ndarray, "layer head"]:
        return self.per_example.mean(0)

    @property
    def swept(self) -> np.ndarray:
        """``[layer, head]`` True where the head was swept (a ``--heads`` subset leaves the others NaN)."""
        return ~np.isnan(self.per_example).all(0)

    def effects_frame(self) -> pd.DataFrame:
        """``effects.csv`` of ``nasa-lens sweep``: one row per swept head, ``layer, head, effect_mean,
        effect_stderr, n``."""
        eff, se = self.effects, self.stderr
        rows = [{"layer": layer, "head": h, "effect_mean": eff[layer, h], "effect_stderr": se[layer, h], "n": self.n}
                for layer, h in zip(*np.nonzero(self.swept))]
        return pd.DataFrame(rows, columns=["layer", "head", "effect_mean", "effect_stderr", "n"])

    def examples_frame(self) -> pd.DataFrame:
        """``effects_by_example.csv``: one row per (example, swept head), ``id, layer, head, effect``."""
        layers, heads = np.nonzero(self.swept)
        n = self.n
        ids = self.ids or [str(i) for i in range(n)]
        return pd.DataFrame({
            "id": np.repeat(ids, len(layers)),
            "layer": np.tile(layers, n),
            "head": np.tile(heads, n),
            "effect": self.per_example[:, layers, heads].ravel(),
        })

    def write_sweep(self, out_dir: str | Path) -> Path:
        """The layout of ``nasa-lens sweep``: ``effects.csv``, ``effects_by_example.csv`` and ``sweep.json``
        (``model, dataset, split, mode, positions, method, format, n, seconds`` and the rest of ``meta``);
        :meth:`read_sweep` reads it back."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / SWEEP_EFFECTS_FILE) as tmp:
            self.effects_frame().to_csv(tmp, index=False)
        with atomic_path(out / SWEEP_EXAMPLES_FILE) as tmp:
            self.examples_frame().to_csv(tmp, index=False)
        meta = {"model": self.model, "dataset": self.dataset, "split": None, "mode": self.mode, "positions": self.positions,
                "method": self.method, "format": None, "n": self.n, "seconds": self.seconds,
                "n_layers": int(self.per_example.shape[1]), "n_heads": int(self.per_example.shape[2])}
        meta.update(self.meta)
        write_json(out / SWEEP_META_FILE, meta)
        return out

    @classmethod
    def read_sweep(cls, out_dir: str | Path) -> EffectSweepResult:
        """Read a folder written by :meth:`write_sweep` (``nasa-lens sweep``)."""
        out = Path(out_dir)
        for name in (SWEEP_META_FILE, SWEEP_EXAMPLES_FILE):
            if not (out / name).is_file():
                raise InputFileNotFoundError(f"{out / name} not found: not a sweep folder (written by `nasa-lens sweep`)")
        meta = read_json(out / SWEEP_META_FILE)
        frame = pd.read_csv(out / SWEEP_EXAMPLES_FILE, dtype={"id": str})
        ids = list(dict.fromkeys(frame["id"]))
        row = {i: k for k, i in enumerate(ids)}
        per = np.full((len(ids), int(meta["n_layers"]), int(meta["n_heads"])), np.nan)
        per[frame["id"].map(row).to_numpy(), frame["layer"].to_numpy(int), frame["head"].to_numpy(int)] = frame["effect"].to_numpy(float)
        known = {"model", "dataset", "mode", "positions", "method", "seconds"}
        return cls(per, meta["method"], meta["mode"], float(meta["seconds"]), ids, None, meta.get("model", ""),
                   meta.get("dataset", ""), meta.get("positions", "all"), {k: v for k, v in meta.items() if k not in known})

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
                                          "model": self.model, "dataset": self.dataset, "positions": self.positions})
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
                   clean_logit_diff=clean if len(clean) else None, model=meta.get("model", ""), dataset=meta.get("dataset", ""),
                   positions=meta.get("positions", "all"))


def sweep_heads(model: LoadedModel, spec: str | Sequence[Head] = "all", seed: int = 0) -> list[Head]:
    """The heads a sweep runs: ``all``, a head spec (``L.H,L.H``, ``random:K[:SEED]``) or a list."""
    if isinstance(spec, str) and spec.strip() == "all":
        return [(layer, h) for layer in range(model.n_layers) for h in range(model.n_heads)]
    return parse_heads(spec, model.n_layers, model.n_heads)


def effect_sweep(
    model: LoadedModel,
    dataset: Sequence[Any],
    config: EffectSweepConfig | None = None,
    *,
    reference: ZReference | None = None,
    fmt: PromptFormat | str | None = None,
    progress: bool = True,
    partial: str | Path | None = None,
) -> EffectSweepResult:
    """Per-head ablation effect on the logit difference, by ``config.method`` at ``config.positions`` for
    ``config.heads`` (see :class:`EffectSweepConfig`). ``partial``: a folder for per-batch, per-layer results of
    the exact method, so a killed run resumes (see :func:`nasa_lens.causal.headsets.run_ablations`)."""
    cfg = config or EffectSweepConfig()
    fmt_ = PromptFormat.of(fmt if fmt is not None else cfg.format)
    examples = list(dataset)
    if not examples:
        raise CausalError("cannot sweep an empty dataset")
    heads = sweep_heads(model, cfg.heads, cfg.seed)
    t0 = time.perf_counter()
    if cfg.mode != "zero" and reference is None:
        reference = collect_z_reference(model, examples, fmt_, batch_size=cfg.batch_size, pool_size=cfg.pool_size, progress=progress)
    kwargs = dict(mode=cfg.mode, reference=reference, fmt=fmt_, batch_size=cfg.batch_size, progress=progress,
                  dataset_name=str(getattr(dataset, "name", "")), positions=cfg.positions, heads=heads, seed=cfg.seed)
    if cfg.method == "exact":
        result = exact_effects(model, examples, partial=partial, **kwargs)
    else:
        result = attribution_effects(model, examples, **kwargs)
    result.seconds = time.perf_counter() - t0
    return result


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
    positions: str = "all",
    heads: Sequence[Head] | None = None,
    seed: int = 0,
    partial: str | Path | None = None,
) -> EffectSweepResult:
    """Ablate every head alone (``heads``: default all) at ``positions``; per batch one clean forward, then
    per head a run from the head's layer of the suffix columns (``after``) or of every column (``all``), each
    exact (:class:`~nasa_lens.causal.suffix.SuffixRunner`). Data-parallel, resumable with ``partial``."""
    from nasa_lens.causal.headsets import run_ablations

    examples = list(examples)
    L, H = model.n_layers, model.n_heads
    heads = [(layer, h) for layer in range(L) for h in range(H)] if heads is None else list(heads)
    t0 = time.perf_counter()
    ablations = [HeadAblation((head,), mode, reference, seed=seed, positions=positions) for head in heads]
    clean_d, eff = run_ablations(model, examples, fmt, ablations, positions, batch_size=batch_size, partial=partial,
                                 progress=progress)
    per = np.full((len(examples), L, H), np.nan)
    for j, (layer, h) in enumerate(heads):
        per[:, layer, h] = eff[:, j]
    return EffectSweepResult(per, "exact", mode, time.perf_counter() - t0, example_ids(examples), clean_d,
                             getattr(model, "name", ""), dataset_name, positions)


def exact_effects_full_forward(
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
    """The whole-prompt sweep as it ran before the suffix runner (kept as the benchmark's baseline): one
    ``run_with_hooks(start_at_layer=l)`` per head and batch, which still runs every block."""
    examples = list(examples)
    L, H = model.n_layers, model.n_heads
    n = len(examples)
    per = np.full((n, L, H), np.nan)
    clean_d = np.full(n, np.nan)
    t0 = time.perf_counter()
    ablations = {(layer, h): HeadAblation(((layer, h),), mode, reference) for layer in range(L) for h in range(H)}
    bar = tqdm(total=n * L * H, desc=f"exact sweep ({mode})", disable=not progress)
    for idx, batch in iter_batches(model, examples, fmt, batch_size):
        runner = BatchRunner(model, batch)
        d0 = (runner.clean[:, 0] - runner.clean[:, 1]).cpu().double().numpy()
        clean_d[idx] = d0
        for (layer, h), ab in ablations.items():
            pair = runner.pair(ab.hooks(batch), layer)
            per[idx, layer, h] = (pair[:, 0] - pair[:, 1]).cpu().double().numpy() - d0
            bar.update(len(idx))
    bar.close()
    return EffectSweepResult(per, "exact", mode, time.perf_counter() - t0, example_ids(examples), clean_d,
                             getattr(model, "name", ""), dataset_name, "all")


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
    positions: str = "all",
    heads: Sequence[Head] | None = None,
    seed: int = 0,
) -> EffectSweepResult:
    """Attribution patching: per batch one forward with gradients w.r.t. every ``hook_z`` (not the weights)
    and one backward of ``sum(logit_yes - logit_no)``; ``effect[b, l, h] = sum_{pos, d} (z_abl - z) * grad``,
    the sum over the ablated ``positions`` (``all`` real tokens, or the suffix ``after``). ``heads``: report
    only these (the others NaN); the cost is the same.

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
    probe = HeadAblation(((0, 0),), mode, reference, seed=seed)  # validates mode / reference
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
            hooks.append(LAST_ONLY)
        with torch.enable_grad():
            logits = bridge.run_with_hooks(batch.input_ids, fwd_hooks=hooks, **batch.forward_kwargs())
            pair = logits[:, -1][:, [batch.answer_yes_id, batch.answer_no_id]].float()
            metric = (pair[:, 0] - pair[:, 1]).sum()
            grads = torch.autograd.grad(metric, [zs[layer] for layer in range(L)])
        clean_d[idx] = (pair[:, 0] - pair[:, 1]).detach().cpu().double().numpy()
        z = torch.stack([zs[layer].detach() for layer in range(L)])  # [layer, b, pos, h, d]
        g = torch.stack([gr.detach() for gr in grads])
        target = _ablated_z(probe, z, batch, reference, mode)
        mask = (batch.attention_mask if positions == "all" else knockout_query_mask(batch, positions)).to(z.dtype)
        eff = einops.einsum((target - z) * g, mask, "layer b pos h d, b pos -> b layer h")
        per[idx] = eff.cpu().double().numpy()
        bar.update(len(idx))
        del zs, grads, logits
    bar.close()
    if heads is not None:
        keep = np.zeros((L, H), bool)
        keep[tuple(np.array(list(heads)).T)] = True
        per[:, ~keep] = np.nan
    return EffectSweepResult(per, "attribution", mode, time.perf_counter() - t0, example_ids(examples), clean_d,
                             getattr(model, "name", ""), dataset_name, positions)


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


def bootstrap_rank_correlation(
    effect: Float[np.ndarray, "question head"],
    score: Float[np.ndarray, "question head"],
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, float]:
    """Spearman over heads of the per-head means of ``effect`` and ``score``, with a percentile bootstrap over
    questions: each resample draws questions with replacement (the same draw for both arrays, which must hold
    the same questions in the same row order), recomputes both per-head means and their Spearman.

    Returns ``spearman`` (on all questions), ``lo``, ``hi`` (the ``alpha/2`` and ``1 - alpha/2`` quantiles),
    ``n_questions``, ``n_heads``, ``n_boot`` and ``seed``. Heads that are NaN in either mean are left out.
    """
    from scipy import stats

    e, s = np.asarray(effect, float), np.asarray(score, float)
    if e.ndim != 2 or e.shape != s.shape:
        raise CausalError(f"effect and score must be [question, head] arrays of one shape, got {e.shape} and {s.shape}")
    if n_boot < 1 or not 0 < alpha < 1:
        raise CausalError(f"n_boot must be >= 1 and alpha in (0, 1), got {n_boot} and {alpha}")
    n = e.shape[0]

    def spearman(weights: Float[np.ndarray, "boot question"]) -> Float[np.ndarray, " boot"]:
        me, ms = weights @ e / n, weights @ s / n  # [boot, head] means of each resample
        out = np.empty(len(weights))
        for b in range(len(weights)):
            ok = ~(np.isnan(me[b]) | np.isnan(ms[b]))
            out[b] = stats.spearmanr(me[b, ok], ms[b, ok]).statistic
        return out

    rng = np.random.default_rng(seed)
    counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(n_boot)]).astype(float)
    boot = spearman(counts)
    point = float(spearman(np.ones((1, n)))[0])
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return {"spearman": point, "lo": float(lo), "hi": float(hi), "n_questions": int(n), "n_heads": int(e.shape[1]),
            "n_boot": int(n_boot), "seed": int(seed)}


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
