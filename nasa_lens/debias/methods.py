"""The de-biasing fixes, each a :class:`~nasa_lens.debias.base.DebiasMethod` registered by name.

How every fix chooses its heads and its free setting -- on the training examples only:

``base``
    Nothing (the reference row).
``threshold``
    No heads. The cut-off on ``p_yes`` that maximises balanced accuracy on the first ``fit_limit`` training
    examples (:func:`nasa_lens.nasa.fit_threshold`; ties: smaller ``|pr_gap|``, then nearer 0.5).
``knockout``
    Candidates: heads ranked by mean NAS on the first ``scan_limit`` training examples (the paper's
    selection). Intervention: :class:`~nasa_lens.interventions.AttentionKnockout` ``remove`` of the "No"
    candidate, renormalised, on the query rows after the later candidate through the answer position. The
    number of heads ``k`` is chosen from ``k_grid`` by :func:`~nasa_lens.debias.base.fit_key` (balanced
    accuracy at 0.5, then ``|pr_gap|``, then fewer heads) on the first ``fit_limit`` training examples.
    The candidate positions are found in each forward pass from the token ids (the last occurrence of the
    instruction's candidate tokens), so the fix works for any caller; a row without both candidates (plain
    text) is left unedited.
``mask`` (UniBias-style)
    Candidates: heads ranked by their estimated effect of mean ablation on ``logit(Yes) - logit(No)``
    (:func:`nasa_lens.causal.attribution_effects` on the first ``sweep_limit`` training examples; the largest
    rise towards "Yes" first). Intervention: :class:`~nasa_lens.interventions.HeadAblation` ``mean`` (the
    head's mean output per position from the end over the first ``reference_limit`` training examples). ``k``
    from ``k_grid`` as for knockout.
``steer`` (ITI-style)
    For every head, ``z`` at the answer position on the first ``fit_limit`` training examples; the direction
    ``d = mean z | gold yes - mean z | gold no``. Heads ranked by the AUROC of the projection ``z . d`` in
    two-fold cross-validation on those examples (direction from one half, AUROC on the other, averaged);
    the top ``k`` are steered. Intervention: ``z[answer] += alpha * d`` for those heads; ``alpha`` chosen
    from ``alpha_grid`` (0 included: no change) by ``fit_key``.
``nasa``
    :func:`nasa_lens.nasa.train_nasa` on the top-``k`` NAS heads (``top:k``, NAS scanned on the training
    examples), ``steps`` steps, ``val_fraction`` of the training examples held out for validation.
``random`` / ``random-<fix>``
    The same procedure with the head ranking replaced by a seeded random order of all heads (``random`` is
    ``random-nasa``): the control for "do the chosen heads matter?".
"""
from __future__ import annotations

import contextlib
import logging
import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import einops
import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from nasa_lens.debias.base import DebiasError, DebiasMethod, _labels, fit_key, register
from nasa_lens.heads import Head, format_head, parse_head, ranked_heads
from nasa_lens.interventions import (
    AttentionKnockout,
    HeadAblation,
    ZReference,
    collect_z_reference,
    pattern_hook_name,
    z_hook_name,
)
from nasa_lens.prompts import PromptFormat, build_batch, iter_batches

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel

__all__ = ["Base", "Threshold", "Knockout", "Mask", "Steer", "NASA", "candidate_positions"]

logger = logging.getLogger(__name__)

_FORMATS = ("yes-no", "no-yes", "true-false", "false-true")


def _fmt(name: str) -> PromptFormat:
    if name not in _FORMATS:
        raise DebiasError(f"unknown prompt format {name!r}; choose one of {list(_FORMATS)}")
    return PromptFormat.named(name)


def _p_yes(model: LoadedModel, examples: Sequence[Any], fmt: PromptFormat, batch_size: int) -> np.ndarray:
    from nasa_lens.evaluate import predict

    return predict(model, list(examples), fmt, batch_size=batch_size, progress=False)[0]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DebiasError(f"{name} must be a positive int, got {value!r}")
    return value


def _parse_heads(heads: Any) -> list[Head] | None:
    if heads is None:
        return None
    if isinstance(heads, str):
        heads = [h for h in heads.split(",") if h.strip()]
    out = [parse_head(h) if isinstance(h, str) else (int(h[0]), int(h[1])) for h in heads]
    if not out:
        raise DebiasError("heads must name at least one head (or be None to choose them on the training split)")
    return out


# ============================================================================================== no heads


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
    option_names = ("fit_limit", "format", "batch_size")

    def __init__(self, fit_limit: int = 128, format: str = "yes-no", batch_size: int = 16) -> None:
        super().__init__()
        self.fit_limit = _positive_int("fit_limit", fit_limit)
        self.format = format
        self.batch_size = _positive_int("batch_size", batch_size)
        _fmt(format)

    @property
    def n_params(self) -> int:
        return 1

    def _fit(self, model: LoadedModel, train: list[Any]) -> None:
        from nasa_lens.nasa import fit_threshold

        rows = train[: self.fit_limit]
        y = _labels(rows)
        p = _p_yes(model, rows, _fmt(self.format), self.batch_size)
        self.threshold = float(fit_threshold(y, p))
        self.info = {"n_fit": len(rows)}


# ============================================================================================== head fixes


class HeadMethod(DebiasMethod):
    """A fix acting on heads: rank candidate heads on the training split (:meth:`_rank_heads`), keep the top
    ``k`` (or choose ``k`` from ``k_grid`` by :func:`fit_key`), fit its own setting (:meth:`_fit_heads`).

    ``heads`` (a list or ``"L.H,L.H"``) skips the ranking: the fix uses exactly those heads.
    ``random_order`` replaces the ranking by a random order of all heads seeded by ``seed`` (the control).
    """

    option_names: ClassVar[tuple[str, ...]] = ("k", "k_grid", "heads_given", "random_order", "seed", "fit_limit", "format", "batch_size")

    def __init__(
        self,
        k: int = 8,
        k_grid: Sequence[int] | None = None,
        heads_given: Any = None,
        random_order: bool = False,
        seed: int = 0,
        fit_limit: int = 64,
        format: str = "yes-no",
        batch_size: int = 16,
    ) -> None:
        super().__init__()
        self.k = _positive_int("k", k)
        self.k_grid = None if k_grid is None else sorted({_positive_int("k_grid entry", int(x)) for x in k_grid})
        if self.k_grid is not None and not self.k_grid:
            raise DebiasError("k_grid must hold at least one head count (or be None: use k)")
        self.heads_given = None if heads_given is None else [format_head(h) for h in _parse_heads(heads_given)]
        self.random_order = bool(random_order)
        self.seed = int(seed)
        self.fit_limit = _positive_int("fit_limit", fit_limit)
        self.format = format
        self.batch_size = _positive_int("batch_size", batch_size)
        _fmt(format)

    # -- selection

    def _rank_heads(self, model: LoadedModel, train: list[Any]) -> list[Head]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _ranking(self, model: LoadedModel, train: list[Any]) -> list[Head]:
        if self.random_order:
            pool = [(layer, h) for layer in range(model.n_layers) for h in range(model.n_heads)]
            random.Random(self.seed).shuffle(pool)
            return pool
        return self._rank_heads(model, train)

    def _fit(self, model: LoadedModel, train: list[Any]) -> None:
        self._prepare(model, train)
        if self.heads_given is not None:
            heads = [parse_head(h, model.n_layers, model.n_heads) for h in self.heads_given]
            self.info["selection"] = "given"
            self._set_heads(model, train, heads)
            return
        order = self._ranking(model, train)
        self.info["ranking_top"] = [format_head(h) for h in order[:32]]
        self.info["selection"] = "random order" if self.random_order else "training-split ranking"
        if self.k_grid is None:
            self._set_heads(model, train, order[: self.k])
            return
        rows = train[: self.fit_limit]
        y = _labels(rows)
        fmt = _fmt(self.format)
        tried, best, best_key = [], None, None
        for k in self.k_grid:
            self._set_heads(model, train, order[:k])
            with self.apply_unchecked(model):
                p = _p_yes(model, rows, fmt, self.batch_size)
            key = fit_key(y, p, k)
            tried.append({"k": k, "balanced_accuracy": key[0], "abs_pr_gap": -key[1]})
            if best_key is None or key > best_key:
                best, best_key = k, key
        self.info["k_sweep"] = tried
        self._set_heads(model, train, order[:best])

    def _prepare(self, model: LoadedModel, train: list[Any]) -> None:
        """Anything the fix needs before heads are set (a reference, token ids)."""

    def _set_heads(self, model: LoadedModel, train: list[Any], heads: list[Head]) -> None:
        self.heads = list(heads)

    @contextlib.contextmanager
    def apply_unchecked(self, model: LoadedModel) -> Iterator[LoadedModel]:
        """:meth:`apply` during fitting (before ``fit`` has recorded the model)."""
        hooks = self._hooks(model)
        with model.bridge.hooks(fwd_hooks=hooks):
            yield model

    def _state(self) -> dict[str, Any]:
        return {}


# ---------------------------------------------------------------------------------------- knockout


def candidate_positions(
    input_ids: Tensor, yes_id: int, no_id: int
) -> tuple[Tensor, Tensor, Tensor]:
    """``(pos_yes, pos_no, found)`` per row: the last occurrence of the instruction's candidate token ids
    (the instruction follows the question, so its candidates are the last ones), and whether both occur."""
    S = input_ids.shape[1]
    idx = torch.arange(S, device=input_ids.device)[None, :]
    def last(tok: int) -> Tensor:
        hit = input_ids == tok
        return torch.where(hit, idx, torch.full_like(idx, -1)).max(-1).values
    py, pn = last(yes_id), last(no_id)
    return py, pn, (py >= 0) & (pn >= 0)


@register
class Knockout(HeadMethod):
    """Remove the selected heads' attention to the "No" candidate (renormalised), heads ranked by NAS."""

    name = "knockout"
    option_names = HeadMethod.option_names + ("scan_limit", "rows")

    def __init__(self, k: int = 8, k_grid: Sequence[int] | None = (2, 4, 8, 16), scan_limit: int = 64, rows: str = "after", **kw: Any) -> None:
        super().__init__(k=k, k_grid=k_grid, **kw)
        self.scan_limit = _positive_int("scan_limit", scan_limit)
        if rows not in ("after", "last"):
            raise DebiasError(f"knockout rows must be 'after' or 'last', got {rows!r}")
        self.rows = rows
        self.candidate_ids: tuple[int, int] | None = None

    def _rank_heads(self, model: LoadedModel, train: list[Any]) -> list[Head]:
        from nasa_lens.nasa import nas_ranking

        ranking = nas_ranking(model, train, _fmt(self.format), limit=self.scan_limit, batch_size=self.batch_size)
        return ranked_heads(ranking)

    def _prepare(self, model: LoadedModel, train: list[Any]) -> None:
        batch = build_batch(model, train[: min(len(train), 16)], _fmt(self.format))
        rows = torch.arange(len(batch))
        ys = set(batch.input_ids[rows, batch.pos_yes].tolist())
        ns = set(batch.input_ids[rows, batch.pos_no].tolist())
        if len(ys) != 1 or len(ns) != 1:
            raise DebiasError(f"knockout: the instruction's candidate tokens differ between prompts ({ys}, {ns})")
        self.candidate_ids = (ys.pop(), ns.pop())
        py, pn, found = candidate_positions(batch.input_ids, *self.candidate_ids)
        if not (bool(found.all()) and torch.equal(py, batch.pos_yes) and torch.equal(pn, batch.pos_no)):
            raise DebiasError("knockout: the candidate positions found from token ids differ from the prompt builder's")

    @property
    def n_params(self) -> int:
        return 0

    def _hooks(self, model: LoadedModel) -> list[tuple[str, Callable[..., Tensor | None]]]:
        if not self.heads:
            return []
        if self.candidate_ids is None:
            raise DebiasError("knockout: not fitted (no candidate token ids)")
        yes_id, no_id = self.candidate_ids
        state: dict[str, Tensor] = {}
        ko = AttentionKnockout(tuple(self.heads), "remove", "no", self.rows)

        def record(ids: Tensor, hook: Any = None) -> Tensor:
            py, pn, found = candidate_positions(ids, yes_id, no_id)
            S = ids.shape[1]
            q = torch.arange(S, device=ids.device)[None, :]
            last = torch.maximum(py, pn)[:, None]
            if self.rows == "after":
                edit = (q > last) & found[:, None]
            else:
                edit = (q == S - 1) & found[:, None]
            state["edit"], state["pos_no"] = edit, torch.where(found, pn, torch.zeros_like(pn))
            return ids

        hooks: list[tuple[str, Callable[..., Tensor | None]]] = [("embed.hook_in", record)]
        for layer, hs in _by_layer(ko.heads).items():
            hooks.append((pattern_hook_name(layer), _knockout_hook(layer, hs, state)))
        return hooks

    def _state(self) -> dict[str, Any]:
        return {"candidate_ids": list(self.candidate_ids) if self.candidate_ids else None}

    def _restore(self, state: Mapping[str, Any], tensors: Mapping[str, Tensor], folder: Path, model: LoadedModel) -> None:
        ids = state.get("candidate_ids")
        if not ids or len(ids) != 2:
            raise DebiasError(f"{folder}: a knockout fix needs its candidate token ids")
        self.candidate_ids = (int(ids[0]), int(ids[1]))


def _by_layer(heads: Sequence[Head]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for layer, h in sorted(heads):
        out.setdefault(layer, []).append(h)
    return out


def _knockout_hook(layer: int, heads: list[int], state: dict[str, Tensor]) -> Callable[..., Tensor]:
    """Zero ``heads``' attention to the "No" column on the edited rows and renormalise (as
    :class:`AttentionKnockout` ``remove``, with positions from ``state``)."""

    def hook(pattern: Float[Tensor, "batch head q k"], hook: Any = None) -> Tensor:
        edit_rows, pos_no = state["edit"], state["pos_no"]
        b, _, q, _ = pattern.shape
        if edit_rows.shape != (b, q):
            raise DebiasError(f"knockout: positions recorded for shape {tuple(edit_rows.shape)} but the pattern is ({b}, {q})")
        out = pattern.clone()
        sub = out[:, heads]
        edit = edit_rows.to(sub.device)[:, None, :, None]
        col = einops.repeat(pos_no.to(sub.device), "b -> b n q 1", n=len(heads), q=q)
        old = sub.gather(-1, col)
        sub = sub.scatter(-1, col, torch.where(edit, torch.zeros_like(old), old))
        denom = sub.sum(-1, keepdim=True)
        sub = torch.where(edit, sub / torch.where(denom > 0, denom, torch.ones_like(denom)), sub)
        out[:, heads] = sub
        return out

    return hook


# ---------------------------------------------------------------------------------------- mask


@register
class Mask(HeadMethod):
    """UniBias-style: mean-ablate the heads whose ablation moves the training split most towards "Yes"."""

    name = "mask"
    option_names = HeadMethod.option_names + ("sweep_limit", "reference_limit")

    def __init__(self, k: int = 8, k_grid: Sequence[int] | None = (2, 4, 8, 16), sweep_limit: int = 32, reference_limit: int = 64, **kw: Any) -> None:
        super().__init__(k=k, k_grid=k_grid, **kw)
        self.sweep_limit = _positive_int("sweep_limit", sweep_limit)
        self.reference_limit = _positive_int("reference_limit", reference_limit)
        self.reference: ZReference | None = None

    def _prepare(self, model: LoadedModel, train: list[Any]) -> None:
        self.reference = collect_z_reference(model, train[: self.reference_limit], _fmt(self.format), batch_size=self.batch_size,
                                             pool_size=0, progress=False)

    def _rank_heads(self, model: LoadedModel, train: list[Any]) -> list[Head]:
        from nasa_lens.causal import attribution_effects

        sweep = attribution_effects(model, train[: self.sweep_limit], mode="mean", reference=self.reference, fmt=_fmt(self.format),
                                    batch_size=self.batch_size, progress=False)
        eff = sweep.effects
        self.info["sweep_effect_top"] = {format_head(h): float(eff[h]) for h in ranked_heads(eff)[:16]}
        return ranked_heads(eff)

    @property
    def n_params(self) -> int:
        if self.reference is None or not self.heads:
            return 0
        P = int((self.reference.count > 0).sum())
        return len(self.heads) * (P + 1) * int(self.reference.mean.shape[-1])

    def _hooks(self, model: LoadedModel) -> list[tuple[str, Callable[..., Tensor | None]]]:
        if not self.heads:
            return []
        if self.reference is None:
            raise DebiasError("mask: not fitted (no mean reference)")
        return HeadAblation(tuple(self.heads), "mean", self.reference).hooks()

    def _tensors(self) -> dict[str, Tensor]:
        assert self.reference is not None
        ref = self.reference
        P = int((ref.count > 0).sum())  # positions reached by some reference prompt (from the end)
        out = {"count": ref.count[:P].clone()}
        for layer, h in self.heads:
            out[f"mean.{layer}.{h}"] = ref.mean[layer, :P, h].clone()
            out[f"fallback.{layer}.{h}"] = ref.fallback[layer, h].clone()
        return out

    def _restore(self, state: Mapping[str, Any], tensors: Mapping[str, Tensor], folder: Path, model: LoadedModel) -> None:
        try:
            count = tensors["count"].long()
            P, D = int(count.shape[0]), model.d_head
            mean = torch.zeros(model.n_layers, P, model.n_heads, D)
            fallback = torch.zeros(model.n_layers, model.n_heads, D)
            for layer, h in self.heads:
                mean[layer, :, h] = tensors[f"mean.{layer}.{h}"]
                fallback[layer, h] = tensors[f"fallback.{layer}.{h}"]
        except (KeyError, RuntimeError) as exc:
            raise DebiasError(f"{folder}: the mask's mean tensors do not fit {model.name!r} ({exc})") from None
        self.reference = ZReference(mean=mean, count=count, fallback=fallback, pool=None, pool_len=torch.zeros(0, dtype=torch.long),
                                    pool_ids=[], n_examples=int(state.get("n_reference", 0)))

    def _state(self) -> dict[str, Any]:
        return {"n_reference": self.reference.n_examples if self.reference is not None else 0}


# ---------------------------------------------------------------------------------------- steer


def _auroc(y: np.ndarray, s: np.ndarray) -> float:
    from nasa_lens.evaluate import _auroc as auroc

    return auroc(y, s)


@torch.no_grad()
def answer_z(model: LoadedModel, examples: Sequence[Any], fmt: PromptFormat, batch_size: int = 16) -> Float[Tensor, "example layer head d_head"]:
    """Every head's output ``z`` at the answer (last prompt) position, in input order."""
    L = model.n_layers
    names = {z_hook_name(layer) for layer in range(L)}
    out = torch.zeros(len(examples), L, model.n_heads, model.d_head)
    for idx, batch in iter_batches(model, list(examples), fmt, batch_size):
        _, cache = model.bridge.run_with_cache(batch.input_ids, names_filter=lambda n: n in names, **batch.forward_kwargs())
        z = torch.stack([cache[z_hook_name(layer)][:, -1] for layer in range(L)], dim=1)  # [b, layer, head, d]
        out[idx] = z.float().cpu()
        del cache
    return out


@register
class Steer(HeadMethod):
    """ITI-style: add ``alpha * (mean z | yes - mean z | no)`` to the top-``k`` probe heads at the answer position."""

    name = "steer"
    option_names = HeadMethod.option_names + ("alpha_grid",)

    def __init__(self, k: int = 8, k_grid: Sequence[int] | None = None, alpha_grid: Sequence[float] = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0), **kw: Any) -> None:
        super().__init__(k=k, k_grid=k_grid, **kw)
        self.alpha_grid = sorted({float(a) for a in alpha_grid})
        if not self.alpha_grid or not all(math.isfinite(a) for a in self.alpha_grid):
            raise DebiasError(f"alpha_grid must hold finite numbers, got {alpha_grid!r}")
        self.alpha = 0.0
        self.directions: Tensor | None = None  # [layer, head, d_head] (only selected heads are used/saved)
        self._z: Tensor | None = None
        self._y: np.ndarray | None = None

    def _prepare(self, model: LoadedModel, train: list[Any]) -> None:
        rows = train[: self.fit_limit]
        self._y = _labels(rows)
        self._z = answer_z(model, rows, _fmt(self.format), self.batch_size)
        yes, no = torch.as_tensor(self._y == 1), torch.as_tensor(self._y == 0)
        self.directions = self._z[yes].mean(0) - self._z[no].mean(0)

    def _rank_heads(self, model: LoadedModel, train: list[Any]) -> list[Head]:
        assert self._z is not None and self._y is not None
        z, y = self._z, self._y
        n = len(y)
        fold = np.arange(n) % 2
        score = np.zeros((model.n_layers, model.n_heads))
        for f in (0, 1):
            a, b = fold != f, fold == f
            ya, yb = y[a], y[b]
            if not ((ya == 1).any() and (ya == 0).any() and (yb == 1).any() and (yb == 0).any()):
                raise DebiasError("steer: each half of the fit examples needs both labels; use a larger fit_limit")
            za, zb = z[torch.as_tensor(a)], z[torch.as_tensor(b)]
            d = za[torch.as_tensor(ya == 1)].mean(0) - za[torch.as_tensor(ya == 0)].mean(0)  # [L, H, D]
            proj = einops.einsum(zb, d, "n l h d, l h d -> n l h").numpy()
            for layer in range(model.n_layers):
                for h in range(model.n_heads):
                    score[layer, h] += _auroc(yb, proj[:, layer, h]) / 2
        self.info["probe_auroc_top"] = {format_head(h): float(score[h]) for h in ranked_heads(score)[:16]}
        return ranked_heads(score)

    def _set_heads(self, model: LoadedModel, train: list[Any], heads: list[Head]) -> None:
        self.heads = list(heads)
        rows = train[: self.fit_limit]
        y = _labels(rows)
        fmt = _fmt(self.format)
        tried, best, best_key = [], 0.0, None
        for a in self.alpha_grid:
            self.alpha = a
            with self.apply_unchecked(model):
                p = _p_yes(model, rows, fmt, self.batch_size)
            key = fit_key(y, p, abs(a))
            tried.append({"alpha": a, "balanced_accuracy": key[0], "abs_pr_gap": -key[1]})
            if best_key is None or key > best_key:
                best, best_key = a, key
        self.alpha = best
        self.info.setdefault("alpha_sweeps", []).append({"k": len(heads), "tried": tried, "alpha": best})

    def _fit(self, model: LoadedModel, train: list[Any]) -> None:
        super()._fit(model, train)
        self._z = None  # the cached activations are not part of the fix

    @property
    def n_params(self) -> int:
        return len(self.heads) * (int(self.directions.shape[-1]) if self.directions is not None else 0) + 1

    def _hooks(self, model: LoadedModel) -> list[tuple[str, Callable[..., Tensor | None]]]:
        if not self.heads or self.alpha == 0.0:
            return []
        assert self.directions is not None
        hooks = []
        for layer, hs in _by_layer(self.heads).items():
            add = (self.alpha * self.directions[layer, hs]).clone()  # [n, d]

            def hook(z: Tensor, hook: Any = None, hs: list[int] = hs, add: Tensor = add) -> Tensor:
                z = z.clone()
                z[:, -1, hs] += add.to(z)
                return z

            hooks.append((z_hook_name(layer), hook))
        return hooks

    def _state(self) -> dict[str, Any]:
        return {"alpha": self.alpha}

    def _tensors(self) -> dict[str, Tensor]:
        assert self.directions is not None
        return {f"direction.{layer}.{h}": self.directions[layer, h].clone() for layer, h in self.heads}

    def _restore(self, state: Mapping[str, Any], tensors: Mapping[str, Tensor], folder: Path, model: LoadedModel) -> None:
        self.alpha = float(state.get("alpha", 0.0))
        d = torch.zeros(model.n_layers, model.n_heads, model.d_head)
        try:
            for layer, h in self.heads:
                d[layer, h] = tensors[f"direction.{layer}.{h}"]
        except (KeyError, RuntimeError) as exc:
            raise DebiasError(f"{folder}: the steering directions do not fit {model.name!r} ({exc})") from None
        self.directions = d


# ---------------------------------------------------------------------------------------- NASA fine-tune


@register
class NASA(HeadMethod):
    """The NASA fine-tune (:func:`nasa_lens.nasa.train_nasa`) of the top-``k`` NAS heads, as a fix."""

    name = "nasa"
    option_names = HeadMethod.option_names + ("steps", "lr", "train_batch_size", "val_fraction", "scan_limit")

    def __init__(self, k: int = 8, steps: int = 60, lr: float = 2e-3, train_batch_size: int = 8, val_fraction: float = 0.2,
                 scan_limit: int = 64, k_grid: Sequence[int] | None = None, **kw: Any) -> None:
        if k_grid is not None:
            raise DebiasError("nasa trains a fixed number of heads (k); k_grid is not supported")
        super().__init__(k=k, k_grid=None, **kw)
        self.steps = _positive_int("steps", steps)
        self.lr = float(lr)
        self.train_batch_size = _positive_int("train_batch_size", train_batch_size)
        if not 0 <= val_fraction < 1:
            raise DebiasError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.val_fraction = float(val_fraction)
        self.scan_limit = _positive_int("scan_limit", scan_limit)
        self.adapter: Any = None
        self._model: LoadedModel | None = None

    def _rank_heads(self, model: LoadedModel, train: list[Any]) -> list[Head]:
        from nasa_lens.nasa import nas_ranking

        return ranked_heads(nas_ranking(model, train, _fmt(self.format), limit=self.scan_limit, batch_size=self.batch_size))

    def config(self, heads: list[Head]) -> Any:
        from nasa_lens.nasa import NASAConfig

        return NASAConfig(heads=heads, steps=self.steps, lr=self.lr, batch_size=self.train_batch_size, seed=self.seed,
                          format=self.format, eval_batch_size=self.batch_size, progress=False)

    def _set_heads(self, model: LoadedModel, train: list[Any], heads: list[Head]) -> None:
        from nasa_lens.nasa import holdout_split, train_nasa

        self.heads = list(heads)
        tr, val = holdout_split(train, self.val_fraction, seed=self.seed)
        res = train_nasa(model, tr, val, self.config(self.heads))
        self.adapter = res.adapter
        self._model = model
        self.info.update({"steps_done": res.steps_done, "best_step": res.best_step, "n_train": len(tr), "n_val": len(val),
                          "val_before": res.before.metrics if res.before else None,
                          "val_after": res.after.metrics if res.after else None})

    @property
    def n_params(self) -> int:
        return int(self.adapter.n_params) if self.adapter is not None else 0

    @contextlib.contextmanager
    def apply(self, model: LoadedModel) -> Iterator[LoadedModel]:
        self._check_fitted(model)
        with self.adapter.applied(model):
            yield model

    def _save_extra(self, out: Path) -> None:
        from nasa_lens.adapters import save_adapter

        if self._model is None:
            raise DebiasError("nasa: no model to save the adapter for")
        save_adapter(out / "adapter", self.adapter, self._model, config=self.config(self.heads).to_dict(),
                     base_weights_hash=self.base_weights_hash)

    def _restore(self, state: Mapping[str, Any], tensors: Mapping[str, Tensor], folder: Path, model: LoadedModel) -> None:
        from nasa_lens.adapters import AdapterError, load_adapter

        try:
            self.adapter = load_adapter(model, folder / "adapter", mode="none", check_weights=False)
        except (AdapterError, FileNotFoundError) as exc:
            raise DebiasError(f"{folder}: the NASA adapter cannot be loaded: {exc}") from None
        self._model = model


# ---------------------------------------------------------------------------------------- random controls


def _random_variant(base: type[HeadMethod], name: str) -> type[HeadMethod]:
    def __init__(self, *args: Any, random_order: bool = True, **kw: Any) -> None:
        base.__init__(self, *args, random_order=True, **kw)

    cls = type(f"Random{base.__name__}", (base,), {"name": name, "__init__": __init__,
                                                   "__doc__": f"``{base.name}`` on heads in a random order (the control)."})
    return register(cls)


RandomNASA = _random_variant(NASA, "random")
RandomKnockout = _random_variant(Knockout, "random-knockout")
RandomMask = _random_variant(Mask, "random-mask")
RandomSteer = _random_variant(Steer, "random-steer")
