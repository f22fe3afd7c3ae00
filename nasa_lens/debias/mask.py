"""``mask`` (UniBias-style): mean-ablate the heads whose ablation moves the training split most towards "Yes"."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from nasa_lens.debias.base import DebiasError, positive_int, prompt_format, register
from nasa_lens.debias.heads import HeadMethod
from nasa_lens.heads import Head, format_head, ranked_heads
from nasa_lens.interventions import HeadAblation, ZReference, collect_z_reference

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel

__all__ = ["Mask"]


@register
class Mask(HeadMethod):
    """UniBias-style: mean-ablate the heads whose ablation moves the training split most towards "Yes"."""

    name = "mask"
    option_names = HeadMethod.option_names + ("sweep_limit", "reference_limit")

    def __init__(self, k: int = 8, k_grid: Sequence[int] | None = (2, 4, 8, 16), sweep_limit: int = 32, reference_limit: int = 64, **kw: Any) -> None:
        super().__init__(k=k, k_grid=k_grid, **kw)
        self.sweep_limit = positive_int("sweep_limit", sweep_limit)
        self.reference_limit = positive_int("reference_limit", reference_limit)
        self.reference: ZReference | None = None

    def _prepare(self, model: LoadedModel, train: list[Any]) -> None:
        self.reference = collect_z_reference(model, train[: self.reference_limit], prompt_format(self.format), batch_size=self.batch_size,
                                             pool_size=0, progress=False)

    def _rank_heads(self, model: LoadedModel, train: list[Any]) -> list[Head]:
        from nasa_lens.causal import attribution_effects

        sweep = attribution_effects(model, train[: self.sweep_limit], mode="mean", reference=self.reference, fmt=prompt_format(self.format),
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
