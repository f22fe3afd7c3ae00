"""The suffix runner: exact interventions on the positions after the later candidate, recomputing only them.

Attention is causal, so an intervention that changes nothing at positions ``< p`` leaves every layer's
residual stream, keys and values at those positions as in the clean run. :class:`SuffixRunner` therefore runs
the clean batch once (the bridge's own forward), keeping per layer

* the residual entering the block at the window columns ``[p, S)`` (``S`` the padded width),
* the keys and values of columns ``[0, p)`` exactly as the attention used them (after the k-norm and the
  rotary embedding, before grouped-query repetition), recorded through the bridge attention's
  ``past_key_values.update(k, v, layer)`` seam,
* the arguments the Hugging Face model passed to the block (the 4D attention mask with its padding and
  sliding-window terms, the rotary ``(cos, sin)``, the position ids), cut to the window's rows,
* the clean head outputs ``z`` (and, with ``patterns=True``, the attention rows) of columns ``[0, p)``.

An intervened run then calls the bridge blocks from the intervention's first layer on the window columns
only, each attending to the cached prefix keys/values plus its own, and unembeds the last position. The
bridge's hook points fire as in a full run, so the same hook functions work; each hook on ``hook_z`` /
``hook_pattern`` is shown the *full-length* tensor (the clean prefix in front of the recomputed window),
and whatever it returns for the prefix must equal the clean prefix bit for bit: a hook that changes a
position before the window raises :class:`SuffixError` ("not confined to the suffix"), never an
approximation. Other hook points are refused up front.

``p`` is per row of the left-padded batch (the first position after the later candidate,
:func:`suffix_start`); the window starts at the smallest ``p`` of the batch, so a row whose own suffix
starts later has a few clean columns recomputed (exactly) too. ``start=0`` gives the whole-prompt runner
that only skips the layers below the intervention (today's ``run_with_hooks(start_at_layer=l)`` still runs
them, see :mod:`nasa_lens.causal.runner`).

Exactness is checked in ``tests/unit/test_suffix.py`` (real models: ``tests/integration/test_suffix.py``) against full forwards with the same hooks: head ablation
(zero, mean, resample), attention knockout and activation patching, on padded batches of mixed lengths, on
tiny-random in float64 (1e-10) and float32, SmolLM2 and Gemma 3 270M (sliding-window layers, q/k norms).
"""
from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from nasa_lens.interventions import bridge_of
from nasa_lens.prompts import PromptBatch
from nasa_lens.vocab import NasaLensError, pattern_hook_name, z_hook_name

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel

__all__ = ["SuffixError", "SuffixRunner", "suffix_start", "hooked_layers"]

logger = logging.getLogger(__name__)

_Z_RE = re.compile(r"^blocks\.(\d+)\.attn\.hook_z$")
_PATTERN_RE = re.compile(r"^blocks\.(\d+)\.attn\.hook_pattern$")
_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.")


class SuffixError(NasaLensError, ValueError):
    """An intervention the suffix runner cannot run exactly (it changes a position before the suffix, or it
    hooks a point the runner does not recompute); the message says which and what to use instead."""


def suffix_start(batch: PromptBatch) -> Int[Tensor, " example"]:
    """Per row, the first column after the later candidate: where the NAS / knockout rows begin."""
    return batch.pos_candidate_last + 1


def hooked_layers(hooks: Sequence[Any]) -> list[int]:
    """The block indices a hook list touches (``blocks.{l}....`` names), sorted."""
    out = set()
    for name, _ in hooks:
        if not isinstance(name, str):
            raise SuffixError(f"hooks must be named by strings, got {name!r}")
        m = _BLOCK_RE.match(name)
        if m:
            out.add(int(m.group(1)))
    return sorted(out)


class _PrefixKV:
    """Stands in for a Hugging Face cache where the bridge attention calls ``past_key_values.update(k, v,
    layer)`` (after the k-norm and rotary embedding, before grouped-query repetition).

    Recording (the clean run): keeps ``k[:, :, :start]`` / ``v[...]`` of every layer and returns k, v as they
    are. Replaying (a window run): returns the cached prefix followed by the window's own k, v; it is never
    modified, so any number of runs share it."""

    def __init__(self, start: int):
        self.start = start
        self.keys: dict[int, Tensor] = {}
        self.values: dict[int, Tensor] = {}
        self.recording = True

    def update(self, k: Tensor, v: Tensor, layer_idx: int, *args: Any, **kwargs: Any) -> tuple[Tensor, Tensor]:
        if self.recording:
            self.keys[layer_idx] = k[:, :, : self.start].detach()
            self.values[layer_idx] = v[:, :, : self.start].detach()
            return k, v
        if layer_idx not in self.keys:
            raise RuntimeError(f"no cached prefix keys/values for layer {layer_idx}")
        return torch.cat([self.keys[layer_idx], k], dim=2), torch.cat([self.values[layer_idx], v], dim=2)

    def get_seq_length(self, layer_idx: int = 0) -> int:  # what a Hugging Face cache answers
        return self.start


@dataclass
class _Layer:
    """What a window run needs of one layer, from the clean run."""

    resid: Tensor  # [b, window, d_model] entering the block
    kwargs: dict[str, Any]  # the block's arguments cut to the window rows
    z_prefix: Tensor  # [b, start, head, d_head]
    pattern_prefix: Tensor | None  # [b, head, start, S]


def _cut_rows(name: str, value: Any, start: int, width: int) -> Any:
    """A block argument of the full run restricted to the query rows ``[start, width)``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if name == "attention_mask" and torch.is_tensor(value):
        if value.ndim == 4 and value.shape[-2] == width:
            return value[:, :, start:]
        if value.ndim == 2 and value.shape[-1] == width:
            return value  # a 2D padding mask covers all keys; the rectangular causal part is built inside
    elif name == "position_embeddings" and isinstance(value, tuple) and all(torch.is_tensor(t) for t in value):
        if all(t.ndim == 3 and t.shape[1] == width for t in value):
            return tuple(t[:, start:] for t in value)
    elif name == "position_ids" and torch.is_tensor(value) and value.ndim == 2 and value.shape[1] == width:
        return value[:, start:]
    elif name == "cache_position" and torch.is_tensor(value) and value.ndim == 1 and value.shape[0] == width:
        return value[start:]
    raise SuffixError(
        f"the suffix runner does not know how to cut the block argument {name!r} "
        f"({type(value).__name__}{tuple(value.shape) if torch.is_tensor(value) else ''}) to the suffix rows; "
        "this architecture is not supported by the suffix runner (use positions='all')"
    )


class SuffixRunner:
    """One batch: a clean forward that caches what a window run needs, then intervened runs that recompute
    only the columns ``[start, S)`` from the intervention's first layer (see the module docstring).

    Args:
        model: a :class:`~nasa_lens.models.LoadedModel`.
        batch: a left-padded :class:`~nasa_lens.prompts.PromptBatch`.
        start: the first recomputed column; default: the earliest :func:`suffix_start` of the batch. ``0``:
            every column (the whole prompt), skipping only the layers below the intervention.
        patterns: also cache the clean attention rows before ``start`` (needed by hooks on
            ``hook_pattern``; ``[b, head, start, S]`` per layer).

    Attributes:
        clean: ``(logit_yes, logit_no)`` of the clean run at the last position, ``[example, 2]`` (float64).
        start: the first recomputed column.
    """

    def __init__(self, model: Any, batch: PromptBatch, *, start: int | None = None, patterns: bool = False):
        self.model, self.batch, self.bridge = model, batch, bridge_of(model)
        S = batch.seq_len
        self.width = S
        self.start = int(suffix_start(batch).min()) if start is None else int(start)
        if not 0 <= self.start < S:
            raise SuffixError(f"the window start {self.start} is outside the batch width {S}")
        self.has_patterns = patterns or self.start == 0
        self.n_layers = len(self.bridge.blocks)
        self.kv = _PrefixKV(self.start)
        self.layers: list[_Layer] = []
        hf_cfg = getattr(getattr(self.bridge, "original_model", None), "config", None)
        self.softcap = getattr(hf_cfg, "final_logit_softcapping", None)
        with torch.no_grad():
            self.clean: Float[Tensor, "example 2"] = self._clean_run(patterns)

    # ------------------------------------------------------------------------------------- the clean run

    def _clean_run(self, patterns: bool) -> Tensor:
        b, bridge, P = self.batch, self.bridge, self.start
        block_in: dict[int, tuple[Tensor, dict[str, Any]]] = {}
        z: dict[int, Tensor] = {}
        pat: dict[int, Tensor] = {}
        handles = []

        def block_pre(i: int):
            def hook(module: Any, args: tuple, kwargs: dict) -> None:
                hidden = args[0] if args else kwargs["hidden_states"]
                block_in[i] = (hidden.detach()[:, P:], dict(kwargs))

            return hook

        def keep_z(x: Tensor, hook: Any) -> None:
            z[int(hook.name.split(".")[1])] = x.detach()[:, :P]

        def keep_pattern(x: Tensor, hook: Any) -> None:
            pat[int(hook.name.split(".")[1])] = x.detach()[:, :, :P]

        fwd = [(z_hook_name(i), keep_z) for i in range(self.n_layers)]
        if "ln_final.hook_out" in bridge.hook_dict:  # unembed the last position only (the answer is read there)
            fwd.append(("ln_final.hook_out", lambda x, hook=None: x[:, -1:]))
        if patterns:
            fwd += [(pattern_hook_name(i), keep_pattern) for i in range(self.n_layers)]
        try:
            for i, block in enumerate(bridge.blocks):
                handles.append(block.register_forward_pre_hook(block_pre(i), with_kwargs=True))
                handles.append(block.attn.register_forward_pre_hook(self._attn_pre, with_kwargs=True))
            logits = bridge.run_with_hooks(b.input_ids, fwd_hooks=fwd, **b.forward_kwargs())
        finally:
            for h in handles:
                h.remove()
        self.kv.recording = False
        missing = [i for i in range(self.n_layers) if i not in block_in or i not in z or i not in self.kv.keys]
        if missing:
            raise SuffixError(
                f"the clean run did not pass through layers {missing} the way the suffix runner expects "
                "(no block input, hook_z or key/value update seen); this architecture is not supported by the suffix runner"
            )
        for i in range(self.n_layers):
            hidden, kwargs = block_in[i]
            cut = {k: _cut_rows(k, v, P, self.width) for k, v in kwargs.items() if k not in ("cache", "past_key_values", "use_cache")}
            self.layers.append(_Layer(hidden, cut, z[i], pat.get(i)))
        return logits[:, -1][:, [b.answer_yes_id, b.answer_no_id]].double()

    # ------------------------------------------------------------------------------------- window runs

    def first_layer(self, hooks: Sequence[Any]) -> int:
        """The first layer a hook list touches (0 for an empty list)."""
        layers = hooked_layers(hooks)
        return layers[0] if layers else 0

    def _check(self, hooks: Sequence[Any]) -> None:
        for name, _ in hooks:
            if not isinstance(name, str):
                raise SuffixError(f"hooks must be named by strings, got {name!r}")
            if _Z_RE.match(name):
                continue
            if _PATTERN_RE.match(name):
                if not self.has_patterns:
                    raise SuffixError(f"a hook on {name} needs the clean attention rows: build the runner with patterns=True")
                continue
            if self.start == 0 and _BLOCK_RE.match(name):
                continue  # the whole prompt is recomputed: any point inside a recomputed block is exact
            raise SuffixError(
                f"the suffix runner does not recompute hook point {name!r} before the suffix; it runs hooks on "
                "blocks.L.attn.hook_z and blocks.L.attn.hook_pattern only (use positions='all' for other points)"
            )

    def _wrap(self, name: str, fn: Any) -> Any:
        """``fn`` shown the full-length tensor (clean prefix + window); its prefix must come back unchanged."""
        if self.start == 0:
            return fn
        m = _Z_RE.match(name)
        layer = int((m or _PATTERN_RE.match(name)).group(1))
        is_z = m is not None
        prefix = self.layers[layer].z_prefix if is_z else self.layers[layer].pattern_prefix
        axis = 1 if is_z else 2
        P = self.start

        def hook(x: Tensor, hook: Any = None) -> Tensor:
            full = torch.cat([prefix.to(x.dtype), x], dim=axis)
            out = fn(full, hook=hook)
            out = full if out is None else out
            if out.shape != full.shape:
                raise SuffixError(f"a hook on {name} returned shape {tuple(out.shape)} for {tuple(full.shape)}")
            head = out.narrow(axis, 0, P)
            if not torch.equal(head, prefix.to(out.dtype)):
                changed = (head != prefix.to(out.dtype)).nonzero()[0].tolist()
                row, col = changed[0], changed[axis]
                raise SuffixError(
                    f"the intervention on {name} changes position {col} of row {row}, before the suffix (the runner "
                    f"recomputes columns {P}..{self.width - 1} only): it is not confined to the suffix, so it cannot "
                    "be run exactly here; ablate the suffix only (positions='after') or use the whole-prompt runner "
                    "(positions='all')"
                )
            return out.narrow(axis, P, self.width - P)

        return hook

    @contextlib.contextmanager
    def _hooks(self, hooks: Sequence[Any]) -> Iterator[None]:
        wrapped = [(name, self._wrap(name, fn)) for name, fn in hooks]
        handles = [block.attn.register_forward_pre_hook(self._attn_pre, with_kwargs=True) for block in self.bridge.blocks]
        try:
            with self.bridge.hooks(fwd_hooks=wrapped):
                yield
        finally:
            for h in handles:
                h.remove()

    def _attn_pre(self, module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """Hand the bridge attention the prefix keys/values where it looks for a cache."""
        return args, {**kwargs, "past_key_values": self.kv}

    def resid_out(self, hooks: Sequence[Any], start_layer: int | None = None) -> Float[Tensor, "example window d_model"]:
        """The residual stream after the last block at the window columns, with ``hooks`` installed,
        recomputed from ``start_layer`` (default: the first hooked layer)."""
        self._check(hooks)
        first = self.first_layer(hooks)
        layer0 = first if start_layer is None else int(start_layer)
        if layer0 > first:
            raise SuffixError(f"start_layer {layer0} is after the first hooked layer {first}: that hook would never run")
        if not 0 <= layer0 < self.n_layers:
            raise SuffixError(f"start_layer {layer0} is outside 0..{self.n_layers - 1}")
        h = self.layers[layer0].resid
        with self._hooks(hooks):
            for i in range(layer0, self.n_layers):
                out = self.bridge.blocks[i](h, **self.layers[i].kwargs)
                h = out[0] if isinstance(out, tuple) else out
        return h

    def logits(self, hidden: Float[Tensor, "example pos d_model"]) -> Float[Tensor, "example pos vocab"]:
        """Final norm, unembedding and (where the model has it) the final logit soft-capping."""
        logits = self.bridge.unembed(self.bridge.ln_final(hidden))
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    @torch.no_grad()
    def pair(self, hooks: Sequence[Any], start_layer: int | None = None) -> Float[Tensor, "example 2"]:
        """``(logit_yes, logit_no)`` at the last position with ``hooks`` installed (float64); an empty hook
        list gives the clean run recomputed from ``start_layer`` (default: the last layer)."""
        if not hooks and start_layer is None:
            start_layer = self.n_layers - 1
        h = self.resid_out(hooks, start_layer)
        logits = self.logits(h[:, -1:])[:, -1]
        return logits[:, [self.batch.answer_yes_id, self.batch.answer_no_id]].double()

    def diff(self, hooks: Sequence[Any], start_layer: int | None = None) -> Float[Tensor, " example"]:
        """``logit(Yes) - logit(No)`` at the last position with ``hooks`` installed."""
        p = self.pair(hooks, start_layer)
        return p[:, 0] - p[:, 1]

    @property
    def clean_diff(self) -> Float[Tensor, " example"]:
        return self.clean[:, 0] - self.clean[:, 1]
