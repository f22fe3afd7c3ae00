"""Path patching: the effect of a sender head on the answer *through* one receiver head's query, key or value
input, or directly, on counterfactual pairs.

Pairs are the activation-patching pairs of :mod:`nasa_lens.causal.patching` (``swap_pairs``: candidates in the other
order; ``label_pairs``: questions with the other gold answer). The base run is the *corrupted* prompt; the
sender ``s = (l_s, h_s)`` contributes ``delta_s = (z_s^clean - z_s^corrupted) W_O,h_s`` to the residual
stream at every position (its clean output minus its corrupted one). A path forward adds ``delta_s`` to the
residual *as one reader sees it* and nowhere else:

* ``q``: the receiver query head ``r = (l_r, h_r)`` (``l_r > l_s``) computes its query from
  ``norm1(resid + delta_s)``; every other head, the keys and values, and all MLPs read the corrupted residual;
* ``k`` / ``v``: the key / value head that ``r`` reads computes its keys / values from ``norm1(resid + delta_s)``.
  Under grouped-query attention that key/value head is shared by its group of query heads, so the entries
  of query heads of one group are equal for ``k`` and ``v`` (the path runs through the shared key/value head);
* ``direct``: the final norm reads ``resid + delta_s`` (the sender's direct path to the logits).

Everything downstream of the receiver is recomputed (the receiver's changed output flows on through every
later component). The metric is ``logit(Yes) - logit(No)`` at the last position, normalised like
activation patching: ``(patched - corrupted) / (clean - corrupted)`` on batch means (0 = no effect, 1 = the
whole clean-corrupted gap restored by this path). Batches are left-padded and run with their attention
mask; every pair has the same token length (checked), and a path forward starts at the receiver's layer
from the cached corrupted residual.

Identity (tested): adding ``delta_s`` to *every* reader after the sender (all query heads, all key/value
heads and every MLP of later layers, the sender layer's MLP, and the final norm) is exactly activation
patching of the sender's ``z``.
"""
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

from nasa_lens.causal.config import CausalError
from nasa_lens.causal.patching import PairSet
from nasa_lens.causal.runner import BatchRunner, percentile_interval
from nasa_lens.heads import Head, HeadSpecError, check_receivers_after, format_head, parse_head
from nasa_lens.dla import original_module
from nasa_lens.interventions import bridge_of, check_heads, z_hook_name
from nasa_lens.io import atomic_path, read_json, write_json
from nasa_lens.parallel import shows_progress
from nasa_lens.prompts import build_batch
from nasa_lens.vocab import PATHS_FILE, VIAS

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel

__all__ = ["VIAS", "PathPatchingResult", "path_patch", "sender_delta"]

logger = logging.getLogger(__name__)


Target = tuple[str, int, int]  # ("q"|"k"|"v", layer, head or kv head), ("mlp", layer, -1), ("direct", -1, -1)


def sender_delta(model: LoadedModel, z_clean: Tensor, z_corr: Tensor, layer: int, head: int) -> Float[Tensor, "b pos d_model"]:
    """``(z_clean - z_corr)[..., head, :] @ W_O,head``: what the sender adds to the residual when it is patched
    from the clean run into the corrupted one (``z``: ``[b, pos, head, d_head]`` at ``blocks.{layer}.attn.hook_z``)."""
    o = original_module(bridge_of(model).blocks[layer].attn.o)
    d_head = int(model.d_head)
    w = o.weight[:, head * d_head : (head + 1) * d_head]  # [d_model, d_head]
    return (z_clean[:, :, head] - z_corr[:, :, head]).to(w.dtype) @ w.T


def _path_hooks(model: LoadedModel, delta: Tensor, targets: Sequence[Target]) -> list[tuple[str, Any]]:
    """Forward hooks that add ``delta`` to the residual as each target reads it (and nowhere else)."""
    bridge = bridge_of(model)
    n_heads, n_kv, d_head = int(model.n_heads), int(model.n_kv_heads), int(model.d_head)
    live: dict[int, Tensor] = {}
    by_layer: dict[int, dict[str, list[int]]] = {}
    hooks: list[tuple[str, Any]] = []
    for kind, layer, idx in targets:
        if kind in ("q", "k", "v"):
            by_layer.setdefault(layer, {}).setdefault(kind, []).append(idx)
        elif kind == "mlp":
            hooks.append((f"blocks.{layer}.ln2.hook_in", lambda x, hook=None: x + delta.to(x.dtype)))
        elif kind == "direct":
            hooks.append(("ln_final.hook_in", lambda x, hook=None: x + delta.to(x.dtype)))
        else:
            raise ValueError(f"unknown path target {kind!r}")
    for layer, kinds in by_layer.items():
        block = bridge.blocks[layer]

        def grab(x: Tensor, hook: Any = None, layer: int = layer) -> None:
            live[layer] = x

        hooks.append((f"blocks.{layer}.ln1.hook_in", grab))
        for kind, idxs in kinds.items():
            proj = original_module(getattr(block.attn, kind))
            n_out = n_heads if kind == "q" else n_kv

            def patch(act: Tensor, hook: Any = None, layer: int = layer, proj: Any = proj, idxs: list[int] = idxs,
                      n_out: int = n_out, norm: Any = original_module(block.ln1)) -> Tensor:
                x = live[layer]
                new = proj(norm(x + delta.to(x.dtype)))  # the adapter hooks on q/k projections run here too
                new = einops.rearrange(new, "b pos (n d) -> b pos n d", n=n_out, d=d_head)
                act = act.clone()
                act[:, :, idxs] = new[:, :, idxs].to(act.dtype)
                return act

            hooks.append((f"blocks.{layer}.attn.hook_{kind}", patch))
    missing = [name for name, _ in hooks if name not in bridge.hook_dict]
    if missing:
        raise CausalError(f"path patching needs the hook points {missing[:3]}, which {getattr(model, 'name', '')!r} lacks")
    return hooks




# ============================================================================================ result


@dataclass
class PathPatchingResult:
    """Per-pair logit differences of every path forward.

    ``patched[pair, sender, receiver, via]`` (via in :attr:`vias`; NaN where the receiver is not after the
    sender), ``direct[pair, sender]``, ``clean[pair]`` and ``corrupted[pair]``."""

    patched: np.ndarray
    direct: np.ndarray
    clean: np.ndarray
    corrupted: np.ndarray
    senders: list[Head]
    receivers: list[Head]
    vias: list[str]
    kind: str = "swap"
    ids: list[str] = field(default_factory=list)
    model: str = ""
    dataset: str = ""
    seconds: float = float("nan")
    n_boot: int = 1000
    seed: int = 0

    @property
    def n(self) -> int:
        return int(self.clean.shape[0])

    @property
    def gap(self) -> float:
        return float(self.clean.mean() - self.corrupted.mean())

    def normalized(self) -> Float[np.ndarray, "sender receiver via"]:
        """``(mean patched - mean corrupted) / (mean clean - mean corrupted)`` per path."""
        return (self.patched.mean(0) - self.corrupted.mean()) / self.gap

    def normalized_direct(self) -> Float[np.ndarray, " sender"]:
        return (self.direct.mean(0) - self.corrupted.mean()) / self.gap

    def to_dataframe(self) -> pd.DataFrame:
        """One row per path: ``sender, receiver, via, normalized, ci_low, ci_high, effect, effect_stderr, n``
        (``receiver="logits", via="direct"`` for the direct path); bootstrap CIs resample the pairs."""
        rng = np.random.default_rng(self.seed)
        idx = rng.integers(0, self.n, (self.n_boot, self.n))
        den = self.clean[idx].mean(1) - self.corrupted[idx].mean(1)
        rows = []

        def add(sender: Head, receiver: str, via: str, values: np.ndarray) -> None:
            if np.isnan(values).all():
                return
            eff = values - self.corrupted
            with np.errstate(all="ignore"):
                boot = (values[idx].mean(1) - self.corrupted[idx].mean(1)) / den
            lo, hi = percentile_interval(boot)
            rows.append({"sender": format_head(sender), "receiver": receiver, "via": via,
                         "normalized": (values.mean() - self.corrupted.mean()) / self.gap, "ci_low": lo, "ci_high": hi,
                         "effect": eff.mean(), "effect_stderr": eff.std(ddof=1) / math.sqrt(self.n) if self.n > 1 else np.nan,
                         "n": self.n, "pairs": self.kind})

        for i, s in enumerate(self.senders):
            for j, r in enumerate(self.receivers):
                for k, via in enumerate(self.vias):
                    add(s, format_head(r), via, self.patched[:, i, j, k])
            add(s, "logits", "direct", self.direct[:, i])
        return pd.DataFrame(rows)

    def matrix(self, via: str = "q") -> pd.DataFrame:
        """Senders x receivers table of the normalised effect through ``via`` (NaN: receiver not after sender)."""
        if via == "direct":
            return pd.DataFrame({"logits": self.normalized_direct()}, index=[format_head(s) for s in self.senders])
        k = self.vias.index(via)
        return pd.DataFrame(self.normalized()[:, :, k], index=[format_head(s) for s in self.senders],
                            columns=[format_head(r) for r in self.receivers])

    def save(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / f"{PATHS_FILE}.csv") as tmp:
            self.to_dataframe().to_csv(tmp, index=False)
        with atomic_path(out / f"{PATHS_FILE}.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, patched=self.patched, direct=self.direct, clean=self.clean, corrupted=self.corrupted)
        write_json(out / f"{PATHS_FILE}.json", {
            "senders": [format_head(h) for h in self.senders], "receivers": [format_head(h) for h in self.receivers],
            "vias": self.vias, "kind": self.kind, "ids": self.ids, "model": self.model, "dataset": self.dataset,
            "seconds": self.seconds, "n_boot": self.n_boot, "seed": self.seed, "gap": self.gap})
        return out

    @classmethod
    def load(cls, out_dir: str | Path) -> PathPatchingResult:
        out = Path(out_dir)
        if not (out / f"{PATHS_FILE}.npz").is_file():
            raise FileNotFoundError(f"{out / (PATHS_FILE + '.npz')} not found: not a path-patching result (PathPatchingResult.save)")
        meta = read_json(out / f"{PATHS_FILE}.json")
        with np.load(out / f"{PATHS_FILE}.npz") as z:
            a = {k: z[k] for k in z.files}
        return cls(a["patched"], a["direct"], a["clean"], a["corrupted"], [parse_head(h) for h in meta["senders"]],
                   [parse_head(h) for h in meta["receivers"]], list(meta["vias"]), meta["kind"], meta["ids"],
                   meta.get("model", ""), meta.get("dataset", ""), float(meta.get("seconds", float("nan"))),
                   int(meta.get("n_boot", 1000)), int(meta.get("seed", 0)))


# ============================================================================================ the runs


def _pair_batches(model: LoadedModel, pairs: PairSet, batch_size: int):
    order = sorted(range(len(pairs)), key=lambda i: len(str(getattr(pairs.clean[i], "question", pairs.clean[i]))))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        cb = build_batch(model, [pairs.clean[i] for i in idx], pairs.clean_fmt).to(model.device)
        xb = build_batch(model, [pairs.corrupted[i] for i in idx], pairs.corrupted_fmt).to(model.device)
        if cb.input_ids.shape != xb.input_ids.shape or not torch.equal(cb.attention_mask, xb.attention_mask):
            lengths = cb.attention_mask.sum(-1) != xb.attention_mask.sum(-1)
            bad = [pairs.ids[idx[r]] for r in torch.nonzero(lengths).flatten().tolist()] or pairs.ids[idx[0] : idx[0] + 1]
            raise CausalError(f"counterfactual pairs must have the same token length; these do not: {bad}")
        yield idx, cb, xb


def _z_cache(model: LoadedModel, batch: Any, layers: Sequence[int]) -> tuple[dict[int, Tensor], Tensor]:
    names = {z_hook_name(layer) for layer in layers}
    with torch.no_grad():
        logits, cache = bridge_of(model).run_with_cache(batch.input_ids, names_filter=lambda nm: nm in names, **batch.forward_kwargs())
    pair = logits[:, -1][:, [batch.answer_yes_id, batch.answer_no_id]].float()
    return {layer: cache[z_hook_name(layer)] for layer in layers}, pair


def path_patch(
    model: LoadedModel,
    pairs: PairSet,
    senders: Sequence[Head],
    receivers: Sequence[Head] | None = None,
    *,
    vias: Sequence[str] = VIAS,
    direct: bool = True,
    batch_size: int = 16,
    progress: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
) -> PathPatchingResult:
    """Path patching of every sender through every receiver (q / k / v) and directly (see the module docstring).

    ``receivers`` default: every head in a layer after the first sender's. Paths whose receiver is not after
    the sender are NaN. One forward per (sender, receiver, via) and batch, started at the receiver's layer;
    with ``k``/``v`` the forward is shared by the query heads of one key/value group.
    """
    senders = [tuple(int(x) for x in s) for s in senders]
    if not senders:
        raise CausalError("path patching needs at least one sender head")
    check_heads(model, senders)
    vias = list(vias)
    bad = [v for v in vias if v not in VIAS]
    if bad:
        raise CausalError(f"unknown path input {bad}; choose from {list(VIAS)} (and direct)")
    L, H = int(model.n_layers), int(model.n_heads)
    if receivers is None:
        first = min(layer for layer, _ in senders)
        receivers = [(layer, h) for layer in range(first + 1, L) for h in range(H)]
    receivers = [tuple(int(x) for x in r) for r in receivers]
    check_heads(model, receivers)
    try:
        check_receivers_after(senders, receivers)
    except HeadSpecError as exc:
        raise CausalError(str(exc)) from None
    n, S, R, V = len(pairs), len(senders), len(receivers), len(vias)
    patched = np.full((n, S, R, V), np.nan)
    direct_ = np.full((n, S), np.nan)
    clean_d, corr_d = np.full(n, np.nan), np.full(n, np.nan)
    sender_layers = sorted({layer for layer, _ in senders})
    t0 = time.perf_counter()
    todo = sum(1 for s in senders for r in receivers if r[0] > s[0]) * V + (S if direct else 0)
    bar = tqdm(total=n * todo, desc=f"path patching ({pairs.kind})", disable=not shows_progress(progress))
    for idx, cb, xb in _pair_batches(model, pairs, batch_size):
        z_clean, c_pair = _z_cache(model, cb, sender_layers)
        z_corr, _ = _z_cache(model, xb, sender_layers)
        runner = BatchRunner(model, xb)
        clean_d[idx] = (c_pair[:, 0] - c_pair[:, 1]).cpu().double().numpy()
        corr_d[idx] = (runner.clean[:, 0] - runner.clean[:, 1]).cpu().double().numpy()
        for i, (ls, hs) in enumerate(senders):
            delta = sender_delta(model, z_clean[ls], z_corr[ls], ls, hs).detach()
            done: dict[tuple[str, int, int], np.ndarray] = {}
            for j, (lr, hr) in enumerate(receivers):
                if lr <= ls:
                    continue
                for k, via in enumerate(vias):
                    unit = hr if via == "q" else model.kv_group(hr)
                    key = (via, lr, unit)
                    if key not in done:
                        pair = runner.pair(_path_hooks(model, delta, [key]), lr)
                        done[key] = (pair[:, 0] - pair[:, 1]).cpu().double().numpy()
                    patched[idx, i, j, k] = done[key]
                    bar.update(len(idx))
            if direct:
                pair = runner.pair(_path_hooks(model, delta, [("direct", -1, -1)]), L - 1)
                direct_[idx, i] = (pair[:, 0] - pair[:, 1]).cpu().double().numpy()
                bar.update(len(idx))
    bar.close()
    return PathPatchingResult(patched, direct_, clean_d, corr_d, senders, receivers, vias, pairs.kind, pairs.ids,
                              getattr(model, "name", ""), "", time.perf_counter() - t0, n_boot, seed)


def all_paths_forward(model: LoadedModel, pairs: PairSet, sender: Head, *, batch_size: int = 16) -> np.ndarray:
    """Logit difference per pair when the sender's delta is added to EVERY reader after it (all q/k/v of
    later layers, the MLPs from the sender's layer on, the final norm): equals activation patching of the
    sender's ``z`` (the identity the tests check)."""
    ls, hs = sender
    L, H, KV = int(model.n_layers), int(model.n_heads), int(model.n_kv_heads)
    targets: list[Target] = [("mlp", ls, -1), ("direct", -1, -1)]
    for layer in range(ls + 1, L):
        targets += [("q", layer, h) for h in range(H)] + [(kv, layer, g) for kv in ("k", "v") for g in range(KV)]
        targets.append(("mlp", layer, -1))
    out = np.full(len(pairs), np.nan)
    for idx, cb, xb in _pair_batches(model, pairs, batch_size):
        z_clean, _ = _z_cache(model, cb, [ls])
        z_corr, _ = _z_cache(model, xb, [ls])
        runner = BatchRunner(model, xb)
        delta = sender_delta(model, z_clean[ls], z_corr[ls], ls, hs).detach()
        pair = runner.pair(_path_hooks(model, delta, targets), ls)
        out[idx] = (pair[:, 0] - pair[:, 1]).cpu().double().numpy()
    return out
