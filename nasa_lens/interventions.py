"""Interventions on attention heads, as scoped TransformerLens hooks.

Every intervention is a small frozen dataclass with ``hooks(batch) -> [(hook_name, fn), ...]``; the hook list
goes into ``bridge.run_with_hooks(..., fwd_hooks=hooks)`` or :func:`intervene` (a context manager around
``bridge.hooks(...)``), so no hook outlives its run, even when the run raises.

Head ablation (``blocks.{l}.attn.hook_z``, ``[batch, pos, head, d_head]``)
    * ``zero``: the head's output vector ``z`` is set to 0 at every position;
    * ``mean``: set to the head's mean ``z`` over a reference dataset, *per position counted from the end
      of the prompt* (prompts are left-padded, so position -1 is the answer position of every row; a
      position further back than any reference prompt gets the head's mean over all reference tokens);
    * ``resample``: set to the head's ``z`` on *another* reference example (never the row's own id),
      aligned from the end; the source is drawn per row from ``(seed, example id)``, preferring a source at
      least as long as the row; positions the source does not cover get the positional mean.

Attention knockout (``blocks.{l}.attn.hook_pattern``, ``[batch, head, q, k]``, post-softmax)
    * ``remove``: the head's attention to the "No" candidate (or "Yes", ``candidate="yes"``) is set to 0
      and the row renormalised to sum to 1, for the query rows after the later candidate through the last
      prompt token (``rows="after"``, the NAS rows) or the last row only (``rows="last"``);
    * ``swap``: the head's attention to the two candidates is exchanged on those rows (rows still sum to 1).

Several heads at once, across layers: each intervention takes any set of heads and installs one hook per
touched layer. :class:`Compose` chains interventions.

Where the hooks act in a TransformerBridge (checked in
``transformer_lens/model_bridge/generalized_components/position_embeddings_attention.py``, the attention the
Llama/SmolLM2 adapter uses, and by the tests):

* ``hook_pattern`` fires on the post-softmax weights *before* ``attn_weights @ V``, so a returned pattern
  is what the head's output is computed from (zeroing a head's pattern equals zeroing its ``z``, bitwise);
* ``hook_z`` is an alias of ``attn.o.hook_in``: its ``hook_conversion`` shows the ``[batch, pos,
  n_heads * d_head]`` input of the o-projection as ``[batch, pos, head, d_head]`` and reverts a returned
  tensor to the flat layout, so a modified ``z`` is exactly what ``o_proj`` multiplies (the tests check
  ``attn.hook_out == o_proj(z_modified)``).

Both therefore propagate downstream; :func:`intervene` and ``run_with_hooks`` remove the hooks in a
``finally`` block (``bridge.hooks`` / ``run_with_hooks`` are exception-safe).
"""
from __future__ import annotations

from nasa_lens.vocab import NasaLensError

import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import einops
import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from nasa_lens.heads import Head, check_head, format_head
from nasa_lens.parallel import shows_progress
from nasa_lens.prompts import PromptBatch, PromptFormat, iter_batches
from nasa_lens.vocab import ABLATION_MODES, ABLATION_POSITIONS, pattern_hook_name, z_hook_name

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel

__all__ = [
    "ABLATION_MODES",
    "KNOCKOUT_MODES",
    "HookSpec",
    "Intervention",
    "InterventionError",
    "ZReference",
    "HeadAblation",
    "AttentionKnockout",
    "Compose",
    "collect_z_reference",
    "heads_by_layer",
    "check_heads",
    "intervene",
    "knockout_query_mask",
    "z_hook_name",
    "pattern_hook_name",
]

logger = logging.getLogger(__name__)

KNOCKOUT_MODES: tuple[str, ...] = ("remove", "swap")
KNOCKOUT_ROWS: tuple[str, ...] = ("after", "last")

HookSpec = tuple[str, Callable[..., Tensor | None]]


class InterventionError(NasaLensError, ValueError):
    """An intervention is mis-specified (unknown mode, missing reference, bad head); the message says which."""


class Intervention(Protocol):
    """Anything with ``hooks(batch)`` returning ``(hook_name, fn)`` pairs for one batch."""

    def hooks(self, batch: PromptBatch | None = None) -> list[HookSpec]: ...

    @property
    def first_layer(self) -> int: ...


def heads_by_layer(heads: Sequence[Head]) -> dict[int, list[int]]:
    """``{layer: [head, ...]}`` in increasing layer order (heads sorted, duplicates dropped)."""
    out: dict[int, set[int]] = {}
    for layer, head in heads:
        out.setdefault(int(layer), set()).add(int(head))
    return {layer: sorted(out[layer]) for layer in sorted(out)}


def _normalise_heads(heads: Sequence[Head] | Sequence[Sequence[int]]) -> tuple[Head, ...]:
    try:
        norm = tuple((int(h[0]), int(h[1])) for h in heads)
    except (TypeError, ValueError, IndexError):
        raise InterventionError(f"heads must be (layer, head) pairs, got {heads!r}") from None
    if not norm:
        raise InterventionError("an intervention needs at least one head")
    if any(layer < 0 or head < 0 for layer, head in norm):
        raise InterventionError(f"heads must have non-negative layer and head indices, got {[format_head(h) for h in norm]}")
    if len(set(norm)) != len(norm):
        raise InterventionError(f"a head is named twice in {[format_head(h) for h in norm]}")
    return norm


def check_heads(model: LoadedModel, heads: Sequence[Head]) -> None:
    """Raise :class:`InterventionError` naming the first head the model does not have."""
    for head in heads:
        check_head(head, model.n_layers, model.n_heads, error=InterventionError)


def bridge_of(model: Any) -> Any:
    """The ``TransformerBridge`` of a :class:`~nasa_lens.models.LoadedModel` (or ``model`` itself if it is one)."""
    return model.bridge if hasattr(model, "bridge") else model


@contextlib.contextmanager
def intervene(model: Any, intervention: Intervention, batch: PromptBatch | None = None) -> Iterator[Any]:
    """Install ``intervention``'s hooks for ``batch`` for the duration of the block (removed on exit,
    exception or not). Yields the bridge."""
    bridge = bridge_of(model)
    with bridge.hooks(fwd_hooks=intervention.hooks(batch)):
        yield bridge


def _row_lengths(batch: PromptBatch) -> Int[Tensor, " example"]:
    return batch.attention_mask.sum(-1).long()


# ----------------------------------------------------------------------------------------- z reference


@dataclass
class ZReference:
    """Head outputs ``z`` of a reference dataset, aligned from the end of the prompt (index 0 = last token).

    Attributes:
        mean: per-layer, per-position-from-end mean ``z`` over the reference prompts long enough to have
            that position, ``[layer, pos_from_end, head, d_head]``.
        count: how many reference prompts have each position, ``[pos_from_end]``.
        fallback: the mean ``z`` over every real reference token, ``[layer, head, d_head]`` (used for
            positions no reference prompt reaches).
        pool: full ``z`` of the first ``pool_size`` reference examples (for resampling), ``[example, layer,
            pos_from_end, head, d_head]`` (zeros beyond an example's length), or None.
        pool_len: token length of each pool example.
        pool_ids: their example ids.
        n_examples: reference examples the means are over.
    """

    mean: Float[Tensor, "layer pos head d_head"]
    count: Int[Tensor, " pos"]
    fallback: Float[Tensor, "layer head d_head"]
    pool: Float[Tensor, "example layer pos head d_head"] | None
    pool_len: Int[Tensor, " example"]
    pool_ids: list[str]
    n_examples: int

    @property
    def n_layers(self) -> int:
        return int(self.mean.shape[0])

    @property
    def n_heads(self) -> int:
        return int(self.mean.shape[2])

    def positional_mean(self, layer: int, seq_len: int) -> Float[Tensor, "pos head d_head"]:
        """The mean ``z`` of ``layer`` laid out left-to-right for a batch ``seq_len`` wide (last column =
        last prompt token), with the all-token mean where no reference prompt reaches."""
        reach = min(seq_len, int(self.mean.shape[1]))
        out = self.fallback[layer].expand(seq_len, -1, -1).clone()
        have = self.count[:reach] > 0
        from_end = torch.where(have[:, None, None], self.mean[layer, :reach], self.fallback[layer])
        out[seq_len - reach :] = from_end.flip(0)
        return out

    def resample_sources(self, ids: Sequence[str], lengths: Sequence[int], seed: int) -> list[int]:
        """For each row (example id, token length) the pool index it takes ``z`` from: never its own id,
        drawn from ``(seed, id)``, among sources at least as long as the row when there are any."""
        if self.pool is None or len(self.pool_ids) == 0:
            raise InterventionError("resample ablation needs a reference pool: collect_z_reference(..., pool_size=N>=2)")
        plen = self.pool_len.tolist()
        out = []
        for row_id, n in zip(ids, lengths):
            others = [j for j, pid in enumerate(self.pool_ids) if pid != str(row_id)]
            if not others:
                raise InterventionError(
                    f"resample ablation of example {row_id!r}: the reference pool has no other example to take z from "
                    "(use a pool of at least 2 examples)"
                )
            long_enough = [j for j in others if plen[j] >= n]
            choices = long_enough or others
            rng = np.random.default_rng([seed, _stable_int(str(row_id))])
            out.append(int(choices[int(rng.integers(len(choices)))]))
        return out

    def resampled(self, layer: int, sources: Sequence[int], seq_len: int) -> Float[Tensor, "example pos head d_head"]:
        """``z`` of ``layer`` from pool examples ``sources`` laid out ``seq_len`` wide (aligned from the end);
        positions a source does not cover get the positional mean."""
        assert self.pool is not None
        base = self.positional_mean(layer, seq_len)
        rows = []
        for j in sources:
            n = min(int(self.pool_len[j]), seq_len)
            row = base.clone()
            row[seq_len - n :] = self.pool[j, layer, :n].flip(0)
            rows.append(row)
        return torch.stack(rows)


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


@torch.no_grad()
def collect_z_reference(
    model: LoadedModel,
    dataset: Sequence[Any],
    fmt: PromptFormat | None = None,
    *,
    batch_size: int = 16,
    pool_size: int = 32,
    progress: bool = True,
) -> ZReference:
    """Mean (per position from the end) and a pool of per-example ``z`` of every head over ``dataset``.

    One cached forward per batch; only ``hook_z`` is kept. ``pool_size`` examples (the first ones of the
    dataset) are kept whole for resample ablation (0: none).
    """
    examples = list(dataset)
    if not examples:
        raise InterventionError("the reference dataset for mean/resample ablation is empty")
    bridge = bridge_of(model)
    L, H, D = model.n_layers, model.n_heads, model.d_head
    sums = torch.zeros(L, 0, H, D)
    count = torch.zeros(0, dtype=torch.long)
    total = torch.zeros(L, H, D, dtype=torch.float64)
    n_tokens = 0
    pool: dict[int, tuple[Tensor, int, str]] = {}
    names = {z_hook_name(layer) for layer in range(L)}
    bar = tqdm(total=len(examples), desc="z reference", disable=not shows_progress(progress), leave=False)
    for idx, batch in iter_batches(model, examples, fmt, batch_size):
        _, cache = bridge.run_with_cache(batch.input_ids, names_filter=lambda n: n in names, **batch.forward_kwargs())
        z = torch.stack([cache[z_hook_name(layer)] for layer in range(L)]).float().cpu()  # [layer, b, pos, h, d]
        z = einops.rearrange(z, "layer b pos h d -> b layer pos h d").flip(2)  # index 0 = last token
        mask = batch.attention_mask.cpu().flip(-1).bool()  # [b, pos] from the end
        S = z.shape[2]
        if S > sums.shape[1]:
            sums = torch.cat([sums, torch.zeros(L, S - sums.shape[1], H, D)], dim=1)
            count = torch.cat([count, torch.zeros(S - count.shape[0], dtype=torch.long)])
        zm = z * mask[:, None, :, None, None]
        sums[:, :S] += zm.sum(0)
        count[:S] += mask.sum(0)
        total += zm.double().sum((0, 2))
        n_tokens += int(mask.sum())
        lengths = mask.sum(-1).tolist()
        for r, i in enumerate(idx):
            if i < pool_size:
                pool[i] = (zm[r, :, : lengths[r]].clone(), lengths[r], batch.ids[r])
        bar.update(len(idx))
        del cache
    bar.close()
    mean = sums / count.clamp_min(1)[None, :, None, None]
    if pool:
        order = sorted(pool)
        width = max(pool[i][1] for i in order)
        stacked = torch.zeros(len(order), L, width, H, D)
        for j, i in enumerate(order):
            stacked[j, :, : pool[i][1]] = pool[i][0]
        pool_t: Tensor | None = stacked
        pool_len = torch.tensor([pool[i][1] for i in order], dtype=torch.long)
        pool_ids = [pool[i][2] for i in order]
    else:
        pool_t, pool_len, pool_ids = None, torch.zeros(0, dtype=torch.long), []
    return ZReference(
        mean=mean,
        count=count,
        fallback=(total / max(n_tokens, 1)).float(),
        pool=pool_t,
        pool_len=pool_len,
        pool_ids=pool_ids,
        n_examples=len(examples),
    )


# ----------------------------------------------------------------------------------------- ablation


@dataclass(frozen=True)
class HeadAblation:
    """Replace the output ``z`` of ``heads`` (any layers) by zero, the reference mean, or a resampled ``z``.

    ``reference`` (from :func:`collect_z_reference`) is needed for ``mean`` and ``resample``; ``seed``
    picks the resample sources.
    """

    heads: tuple[Head, ...]
    mode: str = "zero"
    reference: ZReference | None = field(default=None, repr=False, compare=False)
    seed: int = 0
    positions: str = "all"

    def __post_init__(self) -> None:
        object.__setattr__(self, "heads", _normalise_heads(self.heads))
        if self.mode not in ABLATION_MODES:
            raise InterventionError(f"unknown ablation mode {self.mode!r}; choose one of {list(ABLATION_MODES)}")
        if self.positions not in ABLATION_POSITIONS:
            raise InterventionError(f"unknown ablation positions {self.positions!r}; choose one of {list(ABLATION_POSITIONS)}")
        if self.mode in ("mean", "resample") and self.reference is None:
            raise InterventionError(
                f"{self.mode} ablation needs a reference: pass reference=collect_z_reference(model, dataset)"
            )
        if self.mode == "resample" and (self.reference.pool is None or len(self.reference.pool_ids) < 2):
            raise InterventionError("resample ablation needs a reference pool of at least 2 examples (pool_size >= 2)")
        if self.reference is not None:
            for layer, head in self.heads:
                if layer >= self.reference.n_layers or head >= self.reference.n_heads:
                    raise InterventionError(
                        f"head {layer}.{head} is outside the reference "
                        f"({self.reference.n_layers} layers x {self.reference.n_heads} heads)"
                    )

    @property
    def first_layer(self) -> int:
        return min(layer for layer, _ in self.heads)

    def hooks(self, batch: PromptBatch | None = None) -> list[HookSpec]:
        if self.mode == "resample" and batch is None:
            raise InterventionError("resample ablation needs the batch (its example ids and lengths) to build hooks")
        if self.positions != "all" and batch is None:
            raise InterventionError(f"ablation at positions={self.positions!r} needs the batch (its candidate positions) to build hooks")
        sources = None
        if self.mode == "resample":
            assert self.reference is not None and batch is not None
            sources = self.reference.resample_sources(batch.ids, _row_lengths(batch).tolist(), self.seed)
        where = None if self.positions == "all" else knockout_query_mask(batch, self.positions)
        return [(z_hook_name(layer), self._hook(layer, hs, sources, where)) for layer, hs in heads_by_layer(self.heads).items()]

    def _hook(self, layer: int, heads: list[int], sources: list[int] | None, where: Tensor | None) -> Callable[..., Tensor]:
        mode, ref = self.mode, self.reference

        def hook(z: Float[Tensor, "batch pos head d_head"], hook: Any = None) -> Tensor:
            if max(heads) >= z.shape[2]:
                raise InterventionError(f"head {layer}.{max(heads)} out of range: layer {layer} has {z.shape[2]} heads")
            if where is not None and tuple(where.shape) != tuple(z.shape[:2]):
                raise InterventionError(
                    f"ablation hooks were built for a batch of shape {tuple(where.shape)} but ran on {tuple(z.shape[:2])}"
                )
            if mode == "zero":
                target = torch.zeros_like(z[:, :, heads])
            elif mode == "mean":
                assert ref is not None
                target = einops.repeat(ref.positional_mean(layer, z.shape[1])[:, heads].to(z), "pos h d -> b pos h d", b=z.shape[0])
            else:
                assert ref is not None and sources is not None
                if len(sources) != z.shape[0]:
                    raise InterventionError(
                        f"resample hooks were built for a batch of {len(sources)} rows but ran on {z.shape[0]}"
                    )
                target = ref.resampled(layer, sources, z.shape[1])[:, :, heads].to(z)
            z = z.clone()
            if where is None:
                z[:, :, heads] = target
            else:
                z[:, :, heads] = torch.where(where.to(z.device)[:, :, None, None], target, z[:, :, heads])
            return z

        return hook


# ----------------------------------------------------------------------------------------- knockout


def knockout_query_mask(batch: PromptBatch, rows: str = "after") -> Bool[Tensor, "example q"]:
    """Query rows a knockout edits: after the later candidate through the last prompt token (``"after"``),
    or the last prompt token only (``"last"``)."""
    if rows not in KNOCKOUT_ROWS:
        raise InterventionError(f"unknown knockout rows {rows!r}; choose one of {list(KNOCKOUT_ROWS)}")
    q = torch.arange(batch.seq_len, device=batch.input_ids.device)[None, :]
    if rows == "last":
        return q == batch.pos_answer[:, None]
    return (q > batch.pos_candidate_last[:, None]) & (q <= batch.pos_answer[:, None])


@dataclass(frozen=True)
class AttentionKnockout:
    """Edit the attention pattern of ``heads`` at the candidate columns.

    ``mode="remove"``: zero the attention to ``candidate`` ("no" or "yes") and renormalise each edited row;
    ``mode="swap"``: exchange the attention to "Yes" and "No". ``rows``: ``"after"`` or ``"last"`` (see
    :func:`knockout_query_mask`). Other rows, heads and layers are untouched. A row whose only attention
    was on the removed column is left all-zero (there is nothing to renormalise).
    """

    heads: tuple[Head, ...]
    mode: str = "remove"
    candidate: str = "no"
    rows: str = "after"

    def __post_init__(self) -> None:
        object.__setattr__(self, "heads", _normalise_heads(self.heads))
        if self.mode not in KNOCKOUT_MODES:
            raise InterventionError(f"unknown knockout mode {self.mode!r}; choose one of {list(KNOCKOUT_MODES)}")
        if self.candidate not in ("no", "yes"):
            raise InterventionError(f"knockout candidate must be 'no' or 'yes', got {self.candidate!r}")
        if self.rows not in KNOCKOUT_ROWS:
            raise InterventionError(f"unknown knockout rows {self.rows!r}; choose one of {list(KNOCKOUT_ROWS)}")

    @property
    def first_layer(self) -> int:
        return min(layer for layer, _ in self.heads)

    def hooks(self, batch: PromptBatch | None = None) -> list[HookSpec]:
        if batch is None:
            raise InterventionError("attention knockout needs the batch (its candidate positions) to build hooks")
        rows = knockout_query_mask(batch, self.rows)
        return [(pattern_hook_name(layer), self._hook(layer, hs, batch, rows)) for layer, hs in heads_by_layer(self.heads).items()]

    def _hook(self, layer: int, heads: list[int], batch: PromptBatch, rows: Tensor) -> Callable[..., Tensor]:
        mode = self.mode
        target = batch.pos_no if self.candidate == "no" else batch.pos_yes

        def hook(pattern: Float[Tensor, "batch head q k"], hook: Any = None) -> Tensor:
            if max(heads) >= pattern.shape[1]:
                raise InterventionError(f"head {layer}.{max(heads)} out of range: layer {layer} has {pattern.shape[1]} heads")
            b, _, q, _ = pattern.shape
            if b != len(batch) or q != batch.seq_len:
                raise InterventionError(
                    f"knockout hooks were built for a batch of shape ({len(batch)}, {batch.seq_len}) but ran on ({b}, {q})"
                )
            out = pattern.clone()
            sub = out[:, heads]  # [b, n, q, k]
            edit = rows.to(sub.device)[:, None, :, None]  # [b, 1, q, 1]

            def column(pos: Tensor) -> Tensor:
                return einops.repeat(pos.to(sub.device), "b -> b n q 1", n=len(heads), q=q)

            if mode == "remove":
                col = column(target)
                sub = sub.scatter(-1, col, torch.where(edit, torch.zeros_like(sub.gather(-1, col)), sub.gather(-1, col)))
                denom = sub.sum(-1, keepdim=True)
                renorm = sub / torch.where(denom > 0, denom, torch.ones_like(denom))
                sub = torch.where(edit, renorm, sub)
            else:
                cy, cn = column(batch.pos_yes), column(batch.pos_no)
                vy, vn = sub.gather(-1, cy), sub.gather(-1, cn)
                sub = sub.scatter(-1, cy, torch.where(edit, vn, vy))
                sub = sub.scatter(-1, cn, torch.where(edit, vy, vn))
            out[:, heads] = sub
            return out

        return hook


@dataclass(frozen=True)
class Compose:
    """Several interventions at once (their hooks in order)."""

    parts: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not self.parts:
            raise InterventionError("Compose needs at least one intervention")

    @property
    def first_layer(self) -> int:
        return min(p.first_layer for p in self.parts)

    def hooks(self, batch: PromptBatch | None = None) -> list[HookSpec]:
        return [spec for part in self.parts for spec in part.hooks(batch)]
