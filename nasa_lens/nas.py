"""Negative attention score (NAS): which attention heads attend to the "No" candidate of the instruction.

For one example, one layer ``l`` and one *query* head ``h``, with ``A = blocks.{l}.attn.hook_pattern``
(attention probabilities, ``[example, head, q, k]``) and ``t_yes`` / ``t_no`` the positions of the two
candidate words inside the instruction ("Answer with Yes or No"):

    NAS(l, h) = sum_i (A[i, t_yes] + A[i, t_no]) * log(A[i, t_no] / A[i, t_yes])

exactly the paper's formula. Only an *exact* zero probability is guarded: both probabilities are clamped
from below at ``NAS_EPS`` = the smallest normal float32 (about 1.2e-38), far below any probability a float32
softmax gives a token it attends to at all, so every finite score equals the formula (an earlier version
added 1e-6 inside the log, which moved the top held-out head from 8.80 to 8.54). The sum runs over the
query positions ``i``

* ``positions="after"``: from the token just after the instruction's *later* candidate through the last
  prompt token (for the swapped format "No or Yes" that is after "Yes");
* ``positions="last"``: the last prompt token only (where the answer is decided).

A positive score means the head puts more attention on "No" than on "Yes", weighted by how much it attends
to the candidates at all (Yu et al., NAACL 2025, arXiv 2408.00137). Rank 1 = the most negative-biased head.

With grouped-query attention there is still one score per *query* head (``hook_pattern`` has ``n_heads``);
:attr:`NASResult.kv_group` records which key/value head each query head reads.

The scores are computed *inside* the forward pass (:func:`nas_hooks`): per layer, the hook gathers only the
two candidate columns of the needed query rows, reduces them to ``[example, head]`` and lets the full
pattern go; nothing of size ``q x k`` outlives its layer. :func:`nas_from_pattern` is the same formula on a
full pattern tensor (the reference the tests and the naive path use).

Layout follows TransformerLens ``patching.py``: one generic scorer (:func:`nas_hooks`), thin named users
(:func:`nas_for_batch`, :func:`scan_nas`, :func:`scan_conditions`), result dataclasses with long-format
``to_dataframe()``, error bars and p-values, ``save`` / ``load``.
"""
from __future__ import annotations

import itertools
import logging
import math
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import einops
import numpy as np
import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from nasa_lens.heads import Head, format_head, ranked_heads
from nasa_lens.interventions import bridge_of
from nasa_lens.io import atomic_path, read_json, write_json
from nasa_lens.parallel import over_examples
from nasa_lens.prompts import PromptBatch, PromptFormat, by_batch_plan, iter_batches
from nasa_lens.vocab import (
    CONDITION_FORMATS,
    NAS_HEATMAP_FILE,
    NAS_META_FILE,
    NAS_RANKING_FILE,
    NAS_SCORES_FILE,
    POSITIONS,
    InputError,
    InputFileNotFoundError,
    check_threshold,
    pattern_hook_name,
)

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel

__all__ = [
    "NAS_EPS",
    "POSITIONS",
    "SCORES_FILE",
    "META_FILE",
    "RANKING_FILE",
    "HEATMAP_FILE",
    "NASResult",
    "NASGroupComparison",
    "nas_hooks",
    "nas_for_batch",
    "nas_of_heads",
    "nas_from_pattern",
    "nas_query_mask",
    "scan_nas",
    "scan_conditions",
    "default_conditions",
    "nas_by_group",
    "condition_correlations",
    "pattern_hook_name",
]

logger = logging.getLogger(__name__)

NAS_EPS: float = float(torch.finfo(torch.float32).tiny)
"""The floor both probabilities are clamped to inside the log (guards exact zeros only):
``log(max(A_no, eps) / max(A_yes, eps))``; the smallest normal float32, about 1.18e-38."""

SCORES_FILE = NAS_SCORES_FILE
META_FILE = NAS_META_FILE
RANKING_FILE = NAS_RANKING_FILE
HEATMAP_FILE = NAS_HEATMAP_FILE

NASHook = tuple[str | Callable[[str], bool], Callable[..., None]]


def _check_positions(positions: str) -> str:
    if positions not in POSITIONS:
        raise InputError(f"positions must be one of {list(POSITIONS)}, got {positions!r}")
    return positions


# ------------------------------------------------------------------------------------------- the formula


def nas_query_mask(batch: PromptBatch, positions: str = "after") -> Bool[Tensor, "example q"]:
    """Which query positions of each (left-padded) row NAS sums over.

    ``"after"``: ``max(pos_yes, pos_no) < i <= pos_answer``; ``"last"``: ``i == pos_answer``.
    """
    _check_positions(positions)
    q = torch.arange(batch.seq_len, device=batch.pos_answer.device)
    end = batch.pos_answer[:, None]
    if positions == "last":
        return q[None, :] == end
    return (q[None, :] > batch.pos_candidate_last[:, None]) & (q[None, :] <= end)


def _nas_terms(
    a_yes: Float[Tensor, "example head q"],
    a_no: Float[Tensor, "example head q"],
    query_mask: Bool[Tensor, "example q"],
    eps: float,
) -> Float[Tensor, "example head"]:
    """Sum over masked queries of ``(a_yes + a_no) * log(max(a_no, eps) / max(a_yes, eps))``.

    Unused rows are replaced by 0 *before* the formula (``torch.where``, not a product with the mask), so a
    NaN or inf in a padding query can leak neither into the score nor into its gradient.
    """
    keep = query_mask[:, None, :]
    zero = torch.zeros((), dtype=torch.float32, device=a_yes.device)
    a_yes = torch.where(keep, a_yes.float(), zero)
    a_no = torch.where(keep, a_no.float(), zero)
    log_ratio = torch.log(a_no.clamp_min(eps)) - torch.log(a_yes.clamp_min(eps))
    return ((a_yes + a_no) * log_ratio).sum(dim=-1)


def nas_from_pattern(
    pattern: Float[Tensor, "example head q k"],
    pos_yes: Int[Tensor, " example"],
    pos_no: Int[Tensor, " example"],
    query_mask: Bool[Tensor, "example q"],
    eps: float = NAS_EPS,
) -> Float[Tensor, "example head"]:
    """NAS from a full attention pattern (the reference formula; see the module docstring).

    Args:
        pattern: attention probabilities ``[example, head, q, k]``.
        pos_yes, pos_no: per example, the key position of the "yes" / "no" candidate.
        query_mask: per example, the query positions to sum over (:func:`nas_query_mask`).
        eps: the floor of both probabilities inside the log; default :data:`NAS_EPS` (smallest normal float32).
    """
    if pattern.ndim != 4:
        raise ValueError(f"pattern must be [example, head, q, k], got shape {tuple(pattern.shape)}")
    n, n_heads, n_q, n_k = pattern.shape
    pos_yes = torch.as_tensor(pos_yes, device=pattern.device).long()
    pos_no = torch.as_tensor(pos_no, device=pattern.device).long()
    query_mask = torch.as_tensor(query_mask, device=pattern.device).bool()
    if pos_yes.shape != (n,) or pos_no.shape != (n,):
        raise ValueError(f"pos_yes / pos_no must have shape ({n},), got {tuple(pos_yes.shape)} / {tuple(pos_no.shape)}")
    if query_mask.shape != (n, n_q):
        raise ValueError(f"query_mask must have shape ({n}, {n_q}), got {tuple(query_mask.shape)}")
    for name, pos in (("pos_yes", pos_yes), ("pos_no", pos_no)):
        if n and (int(pos.min()) < 0 or int(pos.max()) >= n_k):
            raise ValueError(f"{name} out of range: the pattern has {n_k} key positions, got {pos.tolist()}")
    idx = einops.repeat(torch.stack([pos_yes, pos_no], dim=-1), "example two -> example head q two", head=n_heads, q=n_q)
    pairs = pattern.gather(-1, idx)
    return _nas_terms(pairs[..., 0], pairs[..., 1], query_mask, eps)


# ------------------------------------------------------------------------------------------- the hooks


def nas_hooks(
    batch: PromptBatch,
    *,
    layers: Sequence[int] | None = None,
    positions: str = "after",
    eps: float = NAS_EPS,
    detach: bool = True,
) -> tuple[list[NASHook], dict[int, Float[Tensor, "example head"]]]:
    """Forward hooks that compute NAS inside the forward pass.

    Returns ``(fwd_hooks, scores)``: pass ``fwd_hooks`` to ``bridge.run_with_hooks`` (or ``bridge.hooks``);
    after the forward ``scores[layer]`` is ``[example, head]`` for every hooked layer. With ``layers`` the
    hooks are named ``blocks.{l}.attn.hook_pattern``; without, there is one entry whose "name" is a filter
    matching every layer's ``hook_pattern`` (the layer is read from the hook point's name). Each hook gathers
    only the two candidate columns of the query rows NAS needs (rows ``min start .. last``), so nothing of
    the full ``q x k`` pattern is kept past its layer; it returns ``None`` (the pattern is not modified).

    Args:
        batch: the left-padded prompt batch (candidate positions per row).
        layers: which layers to hook (default: every layer).
        positions: ``"after"`` or ``"last"`` (see the module docstring).
        eps: the floor of both probabilities inside the log; default :data:`NAS_EPS` (smallest normal float32).
        detach: store detached scores (default). ``False`` keeps the autograd graph, for a training loss.
    """
    _check_positions(positions)
    if layers is not None:
        layers = [int(layer) for layer in layers]
        if len(set(layers)) != len(layers):
            raise ValueError(f"layers names a layer twice: {layers}")
        if any(layer < 0 for layer in layers):
            raise ValueError(f"layers must be >= 0, got {layers}")

    mask_full = nas_query_mask(batch, positions)
    if not bool(mask_full.any(dim=1).all()):
        bad = [batch.ids[i] for i in torch.nonzero(~mask_full.any(dim=1)).flatten().tolist()]
        raise InputError(f"no query position to score for examples {bad}: a candidate is the last prompt token")
    rows = torch.nonzero(mask_full.any(dim=0)).flatten()
    q0, q1 = int(rows.min()), int(rows.max()) + 1
    mask = mask_full[:, q0:q1]
    cand = torch.stack([batch.pos_yes, batch.pos_no], dim=-1)  # [example, 2]
    scores: dict[int, Tensor] = {}
    by_device: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def on(device: torch.device) -> tuple[Tensor, Tensor]:
        # Under a device map each layer's pattern may live on its own device; move the indices once per device.
        if device not in by_device:
            by_device[device] = (cand.to(device), mask.to(device))
        return by_device[device]

    def make_hook(fixed_layer: int | None) -> Callable[..., None]:
        def hook(pattern: Tensor, hook: Any = None) -> None:
            layer = fixed_layer if fixed_layer is not None else _layer_of(hook)
            if pattern.ndim != 4 or pattern.shape[0] != len(batch) or pattern.shape[2] != batch.seq_len:
                raise RuntimeError(
                    f"{pattern_hook_name(layer)}: expected [{len(batch)}, head, {batch.seq_len}, k], "
                    f"got {tuple(pattern.shape)}"
                )
            p = pattern.detach() if detach else pattern
            c, m = on(p.device)
            rows_ = p[:, :, q0:q1, :]  # a view: no copy of the pattern
            idx = einops.repeat(c, "example two -> example head q two", head=p.shape[1], q=q1 - q0)
            pairs = rows_.gather(-1, idx)  # [example, head, q, 2]: the only copy made
            scores[layer] = _nas_terms(pairs[..., 0], pairs[..., 1], m, eps)
            return None

        return hook

    if layers is None:
        return [(_is_pattern_hook, make_hook(None))], scores
    return [(pattern_hook_name(layer), make_hook(layer)) for layer in layers], scores


_PATTERN_RE = re.compile(r"^blocks\.(\d+)\.attn\.hook_pattern$")


def _is_pattern_hook(name: str) -> bool:
    return _PATTERN_RE.match(name) is not None


def _layer_of(hook: Any) -> int:
    match = _PATTERN_RE.match(getattr(hook, "name", "") or "")
    if match is None:
        raise RuntimeError(f"NAS hook attached to {getattr(hook, 'name', hook)!r}, not a blocks.L.attn.hook_pattern point")
    return int(match.group(1))


def stack_layers(scores: dict[int, Tensor], layers: Sequence[int]) -> Float[Tensor, "example layer head"]:
    missing = [layer for layer in layers if layer not in scores]
    if missing:
        raise RuntimeError(f"the NAS hooks did not fire for layers {missing}: does the model expose {pattern_hook_name(missing[0])}?")
    per_layer = [scores[layer].to(scores[layers[0]].device) for layer in layers]
    return einops.rearrange(per_layer, "layer example head -> example layer head")


def _layers(model: Any, layers: Sequence[int] | None) -> list[int]:
    n_layers = int(model.n_layers) if hasattr(model, "n_layers") else int(bridge_of(model).cfg.n_layers)
    if layers is None:
        return list(range(n_layers))
    out = [int(layer) for layer in layers]
    bad = [layer for layer in out if not 0 <= layer < n_layers]
    if bad:
        raise ValueError(f"layers {bad} out of range: the model has {n_layers} layers (0..{n_layers - 1})")
    return out


def _forward_nas(
    model: Any, batch: PromptBatch, positions: str, layers: Sequence[int], extra: Sequence[Any] = ()
) -> tuple[Float[Tensor, "example layer head"], Float[Tensor, "example 2"]]:
    """One forward: NAS for ``layers`` and the (yes, no) answer logits at the last position."""
    from nasa_lens.evaluate import answer_logits

    hooks, store = nas_hooks(batch, layers=layers, positions=positions)
    with torch.no_grad():
        pair = answer_logits(model, batch, [*extra, *hooks])
    return stack_layers(store, layers), pair


def nas_for_batch(
    model: Any,
    batch: PromptBatch,
    *,
    positions: str = "after",
    layers: Sequence[int] | None = None,
    hooks: Sequence[tuple[Any, Callable[..., Any]]] = (),
) -> Float[Tensor, "example layer head"]:
    """NAS of every example of ``batch`` for ``layers`` (default all, in that order), in one no-grad forward.

    ``hooks``: extra ``(name or filter, fn)`` forward hooks for the same run (e.g. an ablation), added before
    the NAS hooks, so NAS sees the intervened patterns; all are removed when the forward ends.
    """
    _check_positions(positions)
    layers = _layers(model, layers)
    nas, store = nas_hooks(batch, layers=layers, positions=positions)
    with torch.no_grad():
        bridge_of(model).run_with_hooks(batch.input_ids, fwd_hooks=[*hooks, *nas], **batch.forward_kwargs())
    return stack_layers(store, layers)



def nas_of_heads(
    model: Any, examples: Sequence[Any], heads: Sequence[Head], fmt: PromptFormat | None = None, *,
    positions: str = "after", batch_size: int = 16,
) -> np.ndarray:
    """Per example, the mean NAS over ``heads`` (one no-grad forward per batch, only their layers hooked;
    with whatever adapters or hooks are attached)."""
    layers = sorted({layer for layer, _ in heads})
    li = {layer: i for i, layer in enumerate(layers)}
    out = np.full(len(examples), np.nan)
    for idx, batch in iter_batches(model, list(examples), fmt, batch_size):
        nas = nas_for_batch(model, batch, positions=positions, layers=layers)  # [example, layer, head]
        sel = torch.stack([nas[:, li[layer], h] for layer, h in heads], dim=-1)
        out[idx] = sel.mean(-1).cpu().double().numpy()
    return out

# ------------------------------------------------------------------------------------------- the result


_YN = {1: "yes", 0: "no"}


def _yn(values: np.ndarray | None, n: int) -> list[str | None]:
    if values is None:
        return [None] * n
    return [_YN.get(int(v)) for v in values]


@dataclass
class NASResult:
    """Per-example NAS of every head, with the labels and the model's own answers.

    Attributes:
        scores: ``[example, layer, head]`` float array.
        ids: example ids.
        labels: gold labels, 1 yes / 0 no / -1 unknown.
        preds: the model's answer in the same forward (1 if ``p_yes > 0.5``), or None.
        p_yes: ``softmax(logit_yes, logit_no)[0]`` at the last position, or None.
        positions: ``"after"`` or ``"last"``.
        format: the prompt format label (``"Yes/No"``, ``"No/Yes"``...).
        model, dataset: names.
        kv_group: ``[head]``, the key/value head each query head reads (grouped-query attention).
        meta: anything else (e.g. the scan config), saved with the result.
    """

    scores: np.ndarray
    ids: list[str]
    labels: np.ndarray
    preds: np.ndarray | None = None
    p_yes: np.ndarray | None = None
    positions: str = "after"
    format: str = "Yes/No"
    model: str = ""
    dataset: str = ""
    kv_group: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float64)
        if self.scores.ndim != 3:
            raise ValueError(f"scores must be [example, layer, head], got shape {self.scores.shape}")
        n = self.scores.shape[0]
        self.ids = [str(i) for i in self.ids]
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if len(self.ids) != n or len(self.labels) != n:
            raise ValueError(f"{n} score rows but {len(self.ids)} ids and {len(self.labels)} labels")
        for name in ("preds", "p_yes"):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value, dtype=np.int64 if name == "preds" else np.float64).reshape(-1)
                if len(value) != n:
                    raise ValueError(f"{n} score rows but {len(value)} {name}")
                setattr(self, name, value)
        if self.kv_group is None:
            self.kv_group = np.arange(self.n_heads)
        self.kv_group = np.asarray(self.kv_group, dtype=np.int64).reshape(-1)
        if len(self.kv_group) != self.n_heads:
            raise ValueError(f"kv_group has {len(self.kv_group)} entries for {self.n_heads} heads")
        _check_positions(self.positions)

    # ------------------------------------------------------------------ shape and summaries

    @property
    def n(self) -> int:
        return int(self.scores.shape[0])

    @property
    def n_layers(self) -> int:
        return int(self.scores.shape[1])

    @property
    def n_heads(self) -> int:
        return int(self.scores.shape[2])

    @property
    def mean(self) -> Float[np.ndarray, "layer head"]:
        """Mean NAS over examples, ``[layer, head]`` (NaN when there are no examples)."""
        if self.n == 0:
            return np.full(self.scores.shape[1:], np.nan)
        return self.scores.mean(axis=0)

    @property
    def stderr(self) -> Float[np.ndarray, "layer head"]:
        """Standard error of the mean, ``std(ddof=1) / sqrt(n)`` (NaN with fewer than 2 examples)."""
        if self.n < 2:
            return np.full(self.scores.shape[1:], np.nan)
        return self.scores.std(axis=0, ddof=1) / math.sqrt(self.n)

    def top_heads(self, k: int = 10) -> list[Head]:
        """The ``k`` heads with the highest mean NAS, highest first (rank 1 = most negative-biased)."""
        return ranked_heads(self.mean)[: self._k(k)]

    def bottom_heads(self, k: int = 10) -> list[Head]:
        """The ``k`` heads with the lowest mean NAS, lowest first."""
        return ranked_heads(self.mean, descending=False)[: self._k(k)]

    def _k(self, k: int) -> int:
        if not 1 <= k <= self.n_layers * self.n_heads:
            raise ValueError(f"k must be in 1..{self.n_layers * self.n_heads}, got {k}")
        return k

    def ranking_frame(self) -> pd.DataFrame:
        """One row per head, ranked: ``layer, head, nas_mean, nas_stderr, n, rank`` (what ``nas.csv`` holds)."""
        mean, se = self.mean, self.stderr
        order = ranked_heads(mean)
        return pd.DataFrame(
            {
                "layer": [layer for layer, _ in order],
                "head": [head for _, head in order],
                "nas_mean": [mean[h] for h in order],
                "nas_stderr": [se[h] for h in order],
                "n": self.n,
                "rank": np.arange(1, len(order) + 1),
            }
        )

    def to_dataframe(self) -> pd.DataFrame:
        """Long format, one row per example x layer x head: ``id, label, pred, p_yes, layer, head, nas``."""
        n, n_layers, n_heads = self.scores.shape
        per_row = n_layers * n_heads

        def rep(values: Sequence[Any] | np.ndarray) -> np.ndarray:
            return np.repeat(np.asarray(values, dtype=object), per_row)

        return pd.DataFrame(
            {
                "id": rep(self.ids),
                "label": rep(_yn(self.labels, n)),
                "pred": rep(_yn(self.preds, n)),
                "p_yes": np.repeat(self.p_yes if self.p_yes is not None else np.full(n, np.nan), per_row),
                "layer": np.tile(np.repeat(np.arange(n_layers), n_heads), n),
                "head": np.tile(np.arange(n_heads), n * n_layers),
                "nas": einops.rearrange(self.scores, "example layer head -> (example layer head)"),
            }
        )

    def subset(self, mask: np.ndarray | Sequence[bool] | Sequence[int]) -> NASResult:
        """The result restricted to some examples: a boolean mask of length ``n`` or integer indices."""
        mask = np.asarray(mask)
        if mask.dtype == bool:
            if mask.shape != (self.n,):
                raise ValueError(f"boolean mask must have shape ({self.n},), got {mask.shape}")
            idx = np.flatnonzero(mask)
        elif mask.size == 0:
            idx = np.zeros(0, dtype=np.int64)
        elif np.issubdtype(mask.dtype, np.integer):
            idx = mask.reshape(-1)
            if idx.min() < -self.n or idx.max() >= self.n:
                raise ValueError(f"subset indices out of range for {self.n} examples")
        else:
            raise ValueError(f"subset needs a boolean mask or integer indices, got dtype {mask.dtype}")
        return NASResult(
            scores=self.scores[idx],
            ids=[self.ids[i] for i in idx],
            labels=self.labels[idx],
            preds=None if self.preds is None else self.preds[idx],
            p_yes=None if self.p_yes is None else self.p_yes[idx],
            positions=self.positions,
            format=self.format,
            model=self.model,
            dataset=self.dataset,
            kv_group=self.kv_group,
            meta=dict(self.meta),
        )

    def summary(self, k: int = 10) -> str:
        top = ", ".join(f"{format_head(h)} ({self.mean[h]:.3f})" for h in self.top_heads(min(k, self.n_layers * self.n_heads)))
        return f"NAS of {self.model} on {self.dataset} ({self.format}, positions={self.positions}, n={self.n}); top heads: {top}"

    # ------------------------------------------------------------------ files

    def save(self, out_dir: str | Path) -> Path:
        """Write ``nas_scores.npz`` (arrays) and ``nas_scores.json`` (ids and metadata) atomically."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {"scores": self.scores, "labels": self.labels, "kv_group": self.kv_group}
        if self.preds is not None:
            arrays["preds"] = self.preds
        if self.p_yes is not None:
            arrays["p_yes"] = self.p_yes
        with atomic_path(out / SCORES_FILE) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        write_json(
            out / META_FILE,
            {
                "ids": self.ids,
                "positions": self.positions,
                "format": self.format,
                "model": self.model,
                "dataset": self.dataset,
                "shape": list(self.scores.shape),
                "eps": NAS_EPS,
                "meta": self.meta,
            },
        )
        return out

    @classmethod
    def load(cls, out_dir: str | Path) -> NASResult:
        """Read a result written by :meth:`save`."""
        out = Path(out_dir)
        for name in (SCORES_FILE, META_FILE):
            if not (out / name).is_file():
                raise InputFileNotFoundError(f"{out / name} not found: not a NAS result folder (written by NASResult.save)")
        meta = read_json(out / META_FILE)
        with np.load(out / SCORES_FILE) as z:
            arrays = {k: z[k] for k in z.files}
        return cls(
            scores=arrays["scores"],
            ids=meta["ids"],
            labels=arrays["labels"],
            preds=arrays.get("preds"),
            p_yes=arrays.get("p_yes"),
            positions=meta["positions"],
            format=meta.get("format", ""),
            model=meta.get("model", ""),
            dataset=meta.get("dataset", ""),
            kv_group=arrays["kv_group"],
            meta=meta.get("meta") or {},
        )


# ------------------------------------------------------------------------------------------- scans


def scan_nas(
    model: LoadedModel,
    dataset: Sequence[Any],
    fmt: PromptFormat | None = None,
    *,
    positions: str = "after",
    batch_size: int = 16,
    progress: bool = True,
    threshold: float = 0.5,
    hooks: Sequence[tuple[Any, Callable[..., Any]]] = (),
) -> NASResult:
    """NAS of every head on every example of ``dataset`` (one no-grad forward per batch).

    The same forward's answer logits give ``p_yes`` and the prediction (``p_yes > threshold``, ties to "no",
    as in :mod:`nasa_lens.evaluate`) at no extra cost. ``hooks``: extra forward hooks for every forward (an
    intervention to score the model under), scoped to each forward.
    """
    from nasa_lens.evaluate import checked_examples

    fmt = fmt or PromptFormat()
    _check_positions(positions)
    threshold = check_threshold(threshold)
    examples, name = checked_examples(dataset, labelled=False, what="scan_nas")
    if not examples:
        raise InputError("cannot scan an empty dataset")
    ids = [str(getattr(ex, "id", i)) for i, ex in enumerate(examples)]  # plain strings: their index
    scores, p_yes, labels = _scan_rows(model, examples, fmt, positions=positions, batch_size=batch_size, progress=progress, hooks=hooks)
    return NASResult(
        scores=scores,
        ids=ids,
        labels=labels,
        preds=(p_yes > threshold).astype(np.int64),
        p_yes=p_yes,
        positions=positions,
        format=fmt.label,
        model=getattr(model, "name", ""),
        dataset=name,
        kv_group=np.array([model.kv_group(h) for h in range(model.n_heads)]),
    )


@over_examples(groups=by_batch_plan)
def _scan_rows(
    model: LoadedModel,
    examples: Sequence[Any],
    fmt: PromptFormat,
    *,
    positions: str,
    batch_size: int,
    progress: bool,
    hooks: Sequence[tuple[Any, Callable[..., Any]]],
) -> tuple[Float[np.ndarray, "example layer head"], Float[np.ndarray, " example"], np.ndarray]:
    """Per example: NAS of every head, ``p_yes`` and the label (data-parallel in a process group)."""
    layers = list(range(model.n_layers))
    n = len(examples)
    scores = np.full((n, model.n_layers, model.n_heads), np.nan)
    p_yes = np.full(n, np.nan)
    labels = np.full(n, -1, dtype=np.int64)
    bar = tqdm(total=n, desc=f"NAS {fmt.label}", disable=not progress, leave=False)
    for idx, batch in iter_batches(model, examples, fmt, batch_size):
        nas, pair = _forward_nas(model, batch, positions, layers, hooks)
        scores[idx] = nas.cpu().double().numpy()
        p_yes[idx] = torch.softmax(pair, dim=-1)[:, 0].cpu().double().numpy()
        labels[idx] = batch.labels.cpu().numpy()
        bar.update(len(idx))
    bar.close()
    return scores, p_yes, labels


def default_conditions() -> dict[str, PromptFormat]:
    """The instruction-agnostic conditions: ``Yes/No``, the swapped order ``No/Yes`` and ``True/False``."""
    return {name: fmt for name, fmt in ((f.label, f) for f in map(PromptFormat.named, CONDITION_FORMATS))}


def scan_conditions(
    model: LoadedModel,
    dataset: Sequence[Any],
    formats: dict[str, PromptFormat] | None = None,
    *,
    positions: str = "after",
    batch_size: int = 16,
    progress: bool = True,
) -> dict[str, NASResult]:
    """:func:`scan_nas` once per prompt format (default :func:`default_conditions`), keyed like ``formats``.

    The "no" candidate is always the format's *negative* word ("No", "False"), whatever its order.
    """
    formats = default_conditions() if formats is None else dict(formats)
    if not formats:
        raise ValueError("scan_conditions needs at least one format")
    return {
        name: scan_nas(model, dataset, fmt, positions=positions, batch_size=batch_size, progress=progress)
        for name, fmt in formats.items()
    }


# ------------------------------------------------------------------------------------------- analysis


GROUPINGS = ("label", "pred")


@dataclass
class NASGroupComparison:
    """Per-head NAS of two groups of examples (gold "yes" vs "no", or predicted "yes" vs "no") with a
    per-head Welch t-test (unequal variances, two-sided)."""

    by: str
    groups: tuple[str, str]
    mean: np.ndarray  # [group, layer, head]
    stderr: np.ndarray  # [group, layer, head]
    n: tuple[int, int]
    t: np.ndarray  # [layer, head]
    p_value: np.ndarray  # [layer, head]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def diff(self) -> np.ndarray:
        """``mean[group 0] - mean[group 1]``, ``[layer, head]``."""
        return self.mean[0] - self.mean[1]

    def to_dataframe(self) -> pd.DataFrame:
        """Long format, one row per group x head: ``by, group, layer, head, nas_mean, nas_stderr, n, t, p_value``."""
        n_layers, n_heads = self.t.shape
        layer = np.repeat(np.arange(n_layers), n_heads)
        head = np.tile(np.arange(n_heads), n_layers)
        frames = [
            pd.DataFrame(
                {
                    "by": self.by,
                    "group": g,
                    "layer": layer,
                    "head": head,
                    "nas_mean": self.mean[i].reshape(-1),
                    "nas_stderr": self.stderr[i].reshape(-1),
                    "n": self.n[i],
                    "t": self.t.reshape(-1),
                    "p_value": self.p_value.reshape(-1),
                }
            )
            for i, g in enumerate(self.groups)
        ]
        return pd.concat(frames, ignore_index=True)

    def table(self) -> pd.DataFrame:
        """Wide, one row per head sorted by p-value: ``layer, head, mean_<a>, mean_<b>, diff, t, p_value``."""
        n_layers, n_heads = self.t.shape
        a, b = self.groups
        df = pd.DataFrame(
            {
                "layer": np.repeat(np.arange(n_layers), n_heads),
                "head": np.tile(np.arange(n_heads), n_layers),
                f"mean_{a}": self.mean[0].reshape(-1),
                f"mean_{b}": self.mean[1].reshape(-1),
                "diff": self.diff.reshape(-1),
                "t": self.t.reshape(-1),
                "p_value": self.p_value.reshape(-1),
            }
        )
        return df.sort_values(["p_value", "layer", "head"], na_position="last", kind="mergesort").reset_index(drop=True)


def _group_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = x.shape[0]
    mean = x.mean(axis=0) if n else np.full(x.shape[1:], np.nan)
    se = x.std(axis=0, ddof=1) / math.sqrt(n) if n >= 2 else np.full(x.shape[1:], np.nan)
    return mean, se


def nas_by_group(result: NASResult, by: str = "label") -> NASGroupComparison:
    """Split the examples by gold label (``by="label"``) or by the model's answer (``by="pred"``) and
    compare NAS per head: group means, standard errors and a Welch t-test p-value (NaN when a group has
    fewer than 2 examples). Examples with an unknown label are left out."""
    from scipy import stats

    if by not in GROUPINGS:
        raise ValueError(f"by must be one of {list(GROUPINGS)}, got {by!r}")
    if by == "pred" and result.preds is None:
        raise ValueError("the result has no predictions (preds is None): rescan with scan_nas to split by prediction")
    key = result.labels if by == "label" else result.preds
    a, b = result.scores[key == 1], result.scores[key == 0]
    ma, sa = _group_stats(a)
    mb, sb = _group_stats(b)
    if len(a) >= 2 and len(b) >= 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # constant heads give NaN, as documented
            test = stats.ttest_ind(a, b, axis=0, equal_var=False)
        t, p = np.asarray(test.statistic, float), np.asarray(test.pvalue, float)
    else:
        t = p = np.full(result.scores.shape[1:], np.nan)
    return NASGroupComparison(
        by=by,
        groups=("yes", "no"),
        mean=np.stack([ma, mb]),
        stderr=np.stack([sa, sb]),
        n=(len(a), len(b)),
        t=t,
        p_value=p,
        meta={"model": result.model, "dataset": result.dataset, "format": result.format, "positions": result.positions},
    )


def condition_correlations(results: dict[str, NASResult], *, k: int = 10) -> pd.DataFrame:
    """How similar the head rankings are across conditions / datasets.

    For every pair of entries of ``results`` (in insertion order): Pearson and Spearman correlation (with
    p-values) of the per-head mean NAS, and the top-``k`` overlap ``|top_k(a) & top_k(b)| / k``.
    Columns: ``a, b, pearson_r, pearson_p, spearman_r, spearman_p, top_k_overlap, k, n_heads``.
    """
    from scipy import stats

    if len(results) < 2:
        raise ValueError(f"condition_correlations needs at least 2 results, got {len(results)}")
    shapes = {name: r.mean.shape for name, r in results.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"results cover different models (layer x head shapes differ): {shapes}")
    n_heads = int(np.prod(next(iter(shapes.values()))))
    if not 1 <= k <= n_heads:
        raise ValueError(f"k must be in 1..{n_heads}, got {k}")
    rows = []
    for (name_a, ra), (name_b, rb) in itertools.combinations(results.items(), 2):
        x, y = ra.mean.reshape(-1), rb.mean.reshape(-1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pr = stats.pearsonr(x, y)
            sr = stats.spearmanr(x, y)
        overlap = len(set(ra.top_heads(k)) & set(rb.top_heads(k))) / k
        rows.append(
            {
                "a": name_a,
                "b": name_b,
                "pearson_r": float(pr.statistic),
                "pearson_p": float(pr.pvalue),
                "spearman_r": float(sr.statistic),
                "spearman_p": float(sr.pvalue),
                "top_k_overlap": overlap,
                "k": k,
                "n_heads": n_heads,
            }
        )
    return pd.DataFrame(rows)
