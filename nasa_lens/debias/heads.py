""":class:`HeadMethod`, the base of every fix that acts on heads (ranking on the training split, ``k`` from a
grid, the random-order control), and :func:`random_variant`, which registers that control."""
from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from nasa_lens.debias.base import DebiasError, DebiasMethod, fit_key, gold_labels, positive_int, predict_p_yes, prompt_format, register
from nasa_lens.heads import Head, format_head, parse_head

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel

__all__ = ["HeadMethod", "random_variant", "parse_heads_option"]

logger = logging.getLogger(__name__)


def parse_heads_option(heads: Any) -> list[Head] | None:
    """``heads_given`` as heads: a list of ``(layer, head)`` or ``L.H`` strings, or ``\"L.H,L.H\"`` (None: choose)."""
    if heads is None:
        return None
    if isinstance(heads, str):
        heads = [h for h in heads.split(",") if h.strip()]
    out = [parse_head(h) if isinstance(h, str) else (int(h[0]), int(h[1])) for h in heads]
    if not out:
        raise DebiasError("heads must name at least one head (or be None to choose them on the training split)")
    return out


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
        self.k = positive_int("k", k)
        self.k_grid = None if k_grid is None else sorted({positive_int("k_grid entry", int(x)) for x in k_grid})
        if self.k_grid is not None and not self.k_grid:
            raise DebiasError("k_grid must hold at least one head count (or be None: use k)")
        self.heads_given = None if heads_given is None else [format_head(h) for h in parse_heads_option(heads_given)]
        self.random_order = bool(random_order)
        self.seed = int(seed)
        self.fit_limit = positive_int("fit_limit", fit_limit)
        self.format = format
        self.batch_size = positive_int("batch_size", batch_size)
        prompt_format(format)

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
        y = gold_labels(rows)
        fmt = prompt_format(self.format)
        tried, best, best_key = [], None, None
        for k in self.k_grid:
            self._set_heads(model, train, order[:k])
            with self.apply_unchecked(model):
                p = predict_p_yes(model, rows, fmt, self.batch_size)
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


def random_variant(base: type[HeadMethod], name: str) -> type[HeadMethod]:
    """Register ``name``: ``base`` with the head ranking replaced by a seeded random order (the control)."""

    def __init__(self, *args: Any, random_order: bool = True, **kw: Any) -> None:
        base.__init__(self, *args, random_order=True, **kw)

    cls = type(f"Random{base.__name__}", (base,), {"name": name, "__init__": __init__, "__module__": base.__module__,
                                                   "__doc__": f"``{base.name}`` on heads in a random order (the control)."})
    return register(cls)
