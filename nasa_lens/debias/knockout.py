"""``knockout``: remove the selected heads' attention to the "No" candidate (renormalised); heads ranked by NAS."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import einops
import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from nasa_lens.debias.base import DebiasError, positive_int, prompt_format, register
from nasa_lens.debias.heads import HeadMethod
from nasa_lens.heads import Head, ranked_heads
from nasa_lens.interventions import AttentionKnockout
from nasa_lens.prompts import build_batch
from nasa_lens.vocab import pattern_hook_name

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel

__all__ = ["Knockout", "candidate_positions", "by_layer"]


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
        self.scan_limit = positive_int("scan_limit", scan_limit)
        if rows not in ("after", "last"):
            raise DebiasError(f"knockout rows must be 'after' or 'last', got {rows!r}")
        self.rows = rows
        self.candidate_ids: tuple[int, int] | None = None

    def _rank_heads(self, model: LoadedModel, train: list[Any]) -> list[Head]:
        from nasa_lens.finetune import nas_ranking

        ranking = nas_ranking(model, train, prompt_format(self.format), limit=self.scan_limit, batch_size=self.batch_size)
        return ranked_heads(ranking)

    def _prepare(self, model: LoadedModel, train: list[Any]) -> None:
        batch = build_batch(model, train[: min(len(train), 16)], prompt_format(self.format))
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
        for layer, hs in by_layer(ko.heads).items():
            hooks.append((pattern_hook_name(layer), _knockout_hook(layer, hs, state)))
        return hooks

    def _state(self) -> dict[str, Any]:
        return {"candidate_ids": list(self.candidate_ids) if self.candidate_ids else None}

    def _restore(self, state: Mapping[str, Any], tensors: Mapping[str, Tensor], folder: Path, model: LoadedModel) -> None:
        ids = state.get("candidate_ids")
        if not ids or len(ids) != 2:
            raise DebiasError(f"{folder}: a knockout fix needs its candidate token ids")
        self.candidate_ids = (int(ids[0]), int(ids[1]))


def by_layer(heads: Sequence[Head]) -> dict[int, list[int]]:
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
