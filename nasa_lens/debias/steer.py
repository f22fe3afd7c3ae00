"""``steer`` (ITI-style): add ``alpha * (mean z | yes - mean z | no)`` at the answer position of probe-ranked heads."""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import einops
import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from nasa_lens.debias.base import DebiasError, fit_key, gold_labels, predict_p_yes, prompt_format, register
from nasa_lens.debias.heads import HeadMethod
from nasa_lens.heads import Head, format_head, ranked_heads
from nasa_lens.debias.knockout import by_layer
from nasa_lens.evaluate import auroc
from nasa_lens.prompts import PromptFormat, iter_batches
from nasa_lens.vocab import z_hook_name

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel

__all__ = ["Steer", "answer_z"]


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
        self._y = gold_labels(rows)
        self._z = answer_z(model, rows, prompt_format(self.format), self.batch_size)
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
                    score[layer, h] += auroc(yb, proj[:, layer, h]) / 2
        self.info["probe_auroc_top"] = {format_head(h): float(score[h]) for h in ranked_heads(score)[:16]}
        return ranked_heads(score)

    def _set_heads(self, model: LoadedModel, train: list[Any], heads: list[Head]) -> None:
        self.heads = list(heads)
        rows = train[: self.fit_limit]
        y = gold_labels(rows)
        fmt = prompt_format(self.format)
        tried, best, best_key = [], 0.0, None
        for a in self.alpha_grid:
            self.alpha = a
            with self.apply_unchecked(model):
                p = predict_p_yes(model, rows, fmt, self.batch_size)
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
        for layer, hs in by_layer(self.heads).items():
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
