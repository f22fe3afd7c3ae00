"""The NASA entry point: select the heads (a spec resolved against a NAS ranking), then train them
(:mod:`nasa_lens.finetune.train`), or grow the head set round by round (:mod:`nasa_lens.finetune.incremental`)."""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nasa_lens.adapters import AdapterError, attached_adapters
from nasa_lens.finetune.config import NASAConfig
from nasa_lens.finetune.incremental import train_incremental
from nasa_lens.finetune.result import TrainResult
from nasa_lens.finetune.selection import select_heads
from nasa_lens.finetune.train import train_heads
from nasa_lens.prompts import PromptFormat
from nasa_lens.vocab import InputError

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel

__all__ = ["train_nasa"]


def train_nasa(
    model: LoadedModel,
    train: Sequence[Any],
    val: Sequence[Any] | None = None,
    config: NASAConfig | None = None,
    *,
    ranking: np.ndarray | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train a NASA adapter on ``train`` (labelled examples), validating on ``val``.

    Args:
        model: the base model (its weights are never changed; no adapter may be merged into it).
        train: training examples (``.question``, ``.label``...); batches are label-balanced.
        val: validation examples (None or empty: no validation, no early stopping).
        config: the run (:class:`NASAConfig`; default settings if None).
        ranking: a ``[layer, head]`` mean-NAS array for ``top:K`` (else scanned on the training examples).
        checkpoint_dir: where ``checkpoint.pt`` goes (every ``checkpoint_every`` steps and at the end).
        resume: continue from ``checkpoint_dir``'s checkpoint if there is one (same config required).
        callback: called after every step with ``(step, parts)``; an exception it raises stops training
            (the model is restored all the same).

    Returns:
        A :class:`TrainResult`; its adapter is detached (use ``result.adapter.applied(model)`` or ``.attach``).
    """
    cfg = config or NASAConfig()
    train = list(train)
    val = list(val or [])
    if not train:
        raise InputError("no training examples")
    merged = [a for a in attached_adapters(model) if a.state == "merged"]
    if merged:
        raise AdapterError("an adapter is merged into the model; remove() it before training a new one")
    fmt = PromptFormat.named(cfg.format)
    t0 = time.perf_counter()
    if cfg.heads == "incremental":
        return train_incremental(model, train, val, cfg, fmt, ranking, checkpoint_dir, resume, callback, t0)
    heads, ranking = select_heads(
        model, cfg.heads, train, fmt=fmt, ranking=ranking, scan_limit=cfg.scan_limit, positions=cfg.nas_positions,
        batch_size=cfg.eval_batch_size, progress=cfg.progress,
    )
    select_seconds = time.perf_counter() - t0
    result = train_heads(model, heads, train, val, cfg, fmt, checkpoint_dir=checkpoint_dir, resume=resume, callback=callback)
    result.ranking = ranking
    result.seconds += select_seconds  # training time (summed over resumed runs) + head selection
    return result
