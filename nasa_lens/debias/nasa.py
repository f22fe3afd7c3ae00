"""The fixes that train: ``nasa`` (the NASA fine-tune of the top-``k`` NAS heads, :func:`nasa_lens.finetune.train_nasa`),
its random-heads control and ``all`` (every head's query rows, and their key rows: the all-heads baseline).

Two ways to set the training run:

* options (what ``nasa-lens compare`` uses): ``k`` heads chosen on the training split like every head fix,
  ``steps``, ``lr``, ``train_batch_size``; ``val_fraction`` of the training examples held out for validation
  unless :meth:`~nasa_lens.debias.base.DebiasMethod.fit` is given ``val``;
* ``config``: a whole :class:`~nasa_lens.finetune.NASAConfig` (what :func:`nasa_lens.debias.compare_methods`
  uses: every trained method shares one config and step budget). The heads then come from a head spec
  resolved by :func:`~nasa_lens.finetune.train_nasa`: the config's own (``nasa``), ``random:K:SEED`` (the
  control: ``k`` heads drawn with ``seed``), ``all`` (``all``; key rows too when ``train_k``).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

from nasa_lens.debias.base import DebiasError, positive_int, prompt_format, register
from nasa_lens.debias.heads import HeadMethod
from nasa_lens.heads import Head, ranked_heads

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.finetune import NASAConfig, TrainResult
    from nasa_lens.models import LoadedModel

__all__ = ["NASA", "AllHeads", "ADAPTER_DIR"]

ADAPTER_DIR = "adapter"
"""The adapter's folder inside a saved trained fix."""


@register
class NASA(HeadMethod):
    """The NASA fine-tune (:func:`nasa_lens.finetune.train_nasa`) of the top-``k`` NAS heads, as a fix.

    ``config`` (a :class:`~nasa_lens.finetune.NASAConfig` or its dict) replaces the training options and the
    head choice (see the module docstring); ``ranking`` (a ``[layer, head]`` mean-NAS array, not saved) replaces
    the NAS scan of the training examples."""

    name = "nasa"
    option_names = HeadMethod.option_names + ("steps", "lr", "train_batch_size", "val_fraction", "scan_limit", "config")

    def __init__(self, k: int = 8, steps: int = 60, lr: float = 2e-3, train_batch_size: int = 8, val_fraction: float = 0.2,
                 scan_limit: int = 64, k_grid: Sequence[int] | None = None, config: NASAConfig | Mapping[str, Any] | None = None,
                 ranking: np.ndarray | None = None, **kw: Any) -> None:
        if k_grid is not None:
            raise DebiasError(f"{self.name} trains a fixed number of heads (k); k_grid is not supported")
        super().__init__(k=k, k_grid=None, **kw)
        self.steps = positive_int("steps", steps)
        self.lr = float(lr)
        self.train_batch_size = positive_int("train_batch_size", train_batch_size)
        if not 0 <= val_fraction < 1:
            raise DebiasError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.val_fraction = float(val_fraction)
        self.scan_limit = positive_int("scan_limit", scan_limit)
        self.config = None if config is None else (dict(config) if isinstance(config, Mapping) else config.to_dict())
        self.ranking = ranking
        self.adapter: Any = None
        self.train_result: TrainResult | None = None
        self._model: LoadedModel | None = None

    # -- the training run

    def training_config(self, heads: str | list[Head]) -> NASAConfig:
        """The :class:`~nasa_lens.finetune.NASAConfig` that trains ``heads`` (a list, or a spec with ``config``)."""
        from nasa_lens.finetune import NASAConfig

        if self.config is not None:
            return NASAConfig.from_dict(self.config).replace(heads=heads)
        return NASAConfig(heads=heads, steps=self.steps, lr=self.lr, batch_size=self.train_batch_size, seed=self.seed,
                          format=self.format, eval_batch_size=self.batch_size, progress=False)

    def head_spec(self) -> str | list[Head]:
        """With ``config``: the head spec :func:`~nasa_lens.finetune.train_nasa` resolves."""
        from nasa_lens.finetune import NASAConfig

        if self.random_order:
            return f"random:{self.k}:{self.seed}"
        return NASAConfig.from_dict(self.config or {}).heads

    def _train(self, model: LoadedModel, train: list[Any], config: NASAConfig) -> None:
        from nasa_lens.finetune import holdout_split, train_nasa

        if self._val is not None:
            tr, val = train, self._val
        elif self.config is not None:
            tr, val = train, []
        else:
            tr, val = holdout_split(train, self.val_fraction, seed=self.seed)
        res = train_nasa(model, tr, val, config, ranking=self.ranking if self.config is not None else None)
        self.heads = list(res.heads)
        self.adapter = res.adapter
        self.train_result = res
        self._model = model
        self.info.update({"steps_done": res.steps_done, "best_step": res.best_step, "n_train": len(tr), "n_val": len(val),
                          "val_before": res.before.metrics if res.before else None,
                          "val_after": res.after.metrics if res.after else None})

    def _fit(self, model: LoadedModel, train: list[Any]) -> None:
        if self.config is None or self.heads_given is not None:
            super()._fit(model, train)
            return
        self.info["selection"] = "random heads" if self.random_order else "head spec"
        self._train(model, train, self.training_config(self.head_spec()))

    def _rank_heads(self, model: LoadedModel, train: list[Any]) -> list[Head]:
        from nasa_lens.finetune import nas_ranking

        if self.ranking is not None:
            return ranked_heads(self.ranking)
        return ranked_heads(nas_ranking(model, train, prompt_format(self.format), limit=self.scan_limit, batch_size=self.batch_size))

    def _set_heads(self, model: LoadedModel, train: list[Any], heads: list[Head]) -> None:
        self._train(model, train, self.training_config(list(heads)))

    # -- the fix

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
            raise DebiasError(f"{self.name}: no model to save the adapter for")
        save_adapter(out / ADAPTER_DIR, self.adapter, self._model, config=self.training_config(self.heads).to_dict(),
                     base_weights_hash=self.base_weights_hash)

    def _restore(self, state: Mapping[str, Any], tensors: Mapping[str, Tensor], folder: Path, model: LoadedModel) -> None:
        from nasa_lens.adapters import AdapterError, load_adapter

        try:
            self.adapter = load_adapter(model, folder / ADAPTER_DIR, mode="none", check_weights=False)
        except (AdapterError, FileNotFoundError) as exc:
            raise DebiasError(f"{folder}: the NASA adapter cannot be loaded: {exc}") from None
        self._model = model


@register
class AllHeads(NASA):
    """The all-heads baseline: the NASA fine-tune of every head's query rows (and, with ``train_k``, every key
    group's key rows), with the same data and step budget as ``nasa``."""

    name = "all"
    option_names = NASA.option_names + ("train_k",)

    def __init__(self, *args: Any, train_k: bool = True, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.train_k = bool(train_k)

    def head_spec(self) -> str:
        return "all"

    def training_config(self, heads: str | list[Head]) -> NASAConfig:
        cfg = super().training_config(heads)
        return cfg.replace(train_k=self.train_k or cfg.train_k)

    def _fit(self, model: LoadedModel, train: list[Any]) -> None:
        if self.config is not None:
            super()._fit(model, train)
            return
        self.info["selection"] = "all heads"
        self._set_heads(model, train, [(layer, h) for layer in range(model.n_layers) for h in range(model.n_heads)])
