"""``nasa``: the NASA fine-tune of the top-``k`` NAS heads (:func:`nasa_lens.finetune.train_nasa`) as a fix."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

from nasa_lens.debias.base import DebiasError, register
from nasa_lens.debias.heads import HeadMethod, _fmt, _positive_int
from nasa_lens.heads import Head, ranked_heads

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel

__all__ = ["NASA"]


@register
class NASA(HeadMethod):
    """The NASA fine-tune (:func:`nasa_lens.finetune.train_nasa`) of the top-``k`` NAS heads, as a fix."""

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
        from nasa_lens.finetune import nas_ranking

        return ranked_heads(nas_ranking(model, train, _fmt(self.format), limit=self.scan_limit, batch_size=self.batch_size))

    def config(self, heads: list[Head]) -> Any:
        from nasa_lens.finetune import NASAConfig

        return NASAConfig(heads=heads, steps=self.steps, lr=self.lr, batch_size=self.train_batch_size, seed=self.seed,
                          format=self.format, eval_batch_size=self.batch_size, progress=False)

    def _set_heads(self, model: LoadedModel, train: list[Any], heads: list[Head]) -> None:
        from nasa_lens.finetune import holdout_split, train_nasa

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
    def _apply(self, model: LoadedModel) -> Iterator[LoadedModel]:
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
