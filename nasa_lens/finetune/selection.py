"""Which heads NASA trains: a head spec resolved against a NAS ranking, and the key/value groups whose key rows
may be trained under grouped-query attention (see :class:`~nasa_lens.finetune.config.NASAConfig`)."""
from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from jaxtyping import Float

from nasa_lens.heads import Head, format_heads, parse_heads
from nasa_lens.nas import scan_nas
from nasa_lens.prompts import PromptFormat
from nasa_lens.vocab import InputError

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel

logger = logging.getLogger("nasa_lens.finetune")


def key_groups_for(
    model: LoadedModel, heads: Sequence[Head], *, train_k: bool, key_rule: str = "complete"
) -> tuple[list[Head], list[Head]]:
    """``(trained key groups, skipped key groups)`` as ``(layer, kv_head)`` for the selected query heads.

    With ``key_rule="complete"`` a key/value group is trained only when every query head reading it is
    selected; a touched but incomplete group is skipped with a warning (training it would move the group's
    unselected heads). With ``key_rule="any"`` every touched group is trained (and a warning names the
    unselected heads that move).
    """
    if not train_k:
        return [], []
    gs = model.group_size
    touched = sorted({(layer, model.kv_group(h)) for layer, h in heads})
    chosen = set(heads)
    trained, skipped = [], []
    for layer, g in touched:
        members = [(layer, h) for h in range(g * gs, (g + 1) * gs)]
        missing = [m for m in members if m not in chosen]
        if not missing:
            trained.append((layer, g))
        elif key_rule == "any":
            trained.append((layer, g))
            _warn(f"training key rows of layer {layer} KV group {g} also moves unselected heads {format_heads(missing)} (key_rule='any')")
        else:
            skipped.append((layer, g))
    if skipped:
        _warn(
            "train_k: skipped the key rows of KV groups "
            + ", ".join(f"{layer}.{g}" for layer, g in skipped)
            + f": with grouped-query attention ({gs} query heads per key head) they would move query heads that "
            "were not selected; select every head of a group to train its key rows, or use key_rule='any'"
        )
    return trained, skipped


def _warn(msg: str) -> None:
    logger.warning(msg)
    warnings.warn(msg, UserWarning, stacklevel=3)


def select_heads(
    model: LoadedModel,
    spec: str | Sequence[Head],
    train: Sequence[Any] = (),
    *,
    fmt: PromptFormat | None = None,
    ranking: np.ndarray | None = None,
    scan_limit: int = 64,
    positions: str = "after",
    batch_size: int = 16,
    progress: bool = False,
) -> tuple[list[Head], np.ndarray | None]:
    """Heads for a spec (see :class:`NASAConfig`), and the NAS ranking ``[layer, head]`` used (or None).

    ``top:K`` / ``bottom:K`` scan NAS on the first ``scan_limit`` examples of ``train`` unless ``ranking``
    (a ``[layer, head]`` mean-NAS array) is given. ``incremental`` returns the top ``1`` head (the
    incremental loop itself lives in :func:`train_nasa`)."""
    if isinstance(spec, str) and spec.strip() == "all":
        return [(layer, h) for layer in range(model.n_layers) for h in range(model.n_heads)], ranking
    if isinstance(spec, str) and spec.strip() == "incremental":
        spec = "top:1"
    needs_rank = isinstance(spec, str) and spec.split(":")[0] in ("top", "bottom")
    if needs_rank and ranking is None:
        ranking = nas_ranking(model, train, fmt, limit=scan_limit, positions=positions, batch_size=batch_size, progress=progress)
    return parse_heads(spec, model.n_layers, model.n_heads, ranking=ranking), ranking


def nas_ranking(
    model: LoadedModel,
    examples: Sequence[Any],
    fmt: PromptFormat | None = None,
    *,
    limit: int = 64,
    positions: str = "after",
    batch_size: int = 16,
    progress: bool = False,
) -> Float[np.ndarray, "layer head"]:
    """Mean NAS ``[layer, head]`` on the first ``limit`` examples (with whatever adapters are attached)."""

    examples = list(examples)[:limit]
    if not examples:
        raise InputError("a top:K / incremental head selection needs training examples to scan")
    return scan_nas(model, examples, fmt, positions=positions, batch_size=batch_size, progress=progress).mean
