"""Resumable NASA checkpoints: the loop state, and the file that carries it with the deltas, the optimizer
state and the torch RNG state (written atomically). Resuming gives exactly the deltas of an uninterrupted run;
a checkpoint written with another config or other heads is refused with a message naming the difference."""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nasa_lens.adapters import HeadAdapter
from nasa_lens.finetune.config import NASAConfig
from nasa_lens.heads import Head, format_head
from nasa_lens.io import atomic_path
from nasa_lens.parallel import writer_only
from nasa_lens.vocab import CHECKPOINT_FILE, InputError

__all__ = ["CHECKPOINT_FILE", "CheckpointError", "LoopState", "Checkpointer"]

logger = logging.getLogger("nasa_lens.finetune")


class CheckpointError(InputError):
    """A checkpoint cannot be resumed (corrupt, or written by another config / head set)."""


@dataclass
class LoopState:
    """Everything of a training loop that a checkpoint must restore (besides deltas, optimizer and RNG)."""

    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_value: float = math.inf
    best_step: int = 0
    best_tensors: dict[str, Tensor] | None = None
    best_preds: tuple[np.ndarray, np.ndarray] | None = None
    before_preds: tuple[np.ndarray, np.ndarray] | None = None
    last_preds: tuple[np.ndarray, np.ndarray] | None = None
    bad_evals: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    last_gap: float = math.nan


class Checkpointer:
    """Writes and reads ``checkpoint_dir/checkpoint.pt`` for one run (one config, one head set).

    ``Checkpointer(None, ...)`` is a no-op (no folder given): nothing is written or resumed.
    """

    def __init__(self, checkpoint_dir: str | Path | None, cfg: NASAConfig, heads: list[Head], key_groups: list[Head]) -> None:
        self.path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None
        self.cfg, self.heads, self.key_groups = cfg, heads, key_groups

    def resume(self, adapter: HeadAdapter, opt: torch.optim.Optimizer) -> tuple[LoopState, bool] | None:
        """Load the checkpoint into ``adapter`` and ``opt`` (and the torch RNG); ``(state, finished)``, or None
        when there is no checkpoint to resume."""
        if self.path is None or not self.path.is_file():
            return None
        state, finished = _load_checkpoint(self.path, adapter, opt, self.cfg, self.heads, self.key_groups)
        logger.info("resumed from %s at step %d", self.path, state.step)
        return state, finished

    def save(self, adapter: HeadAdapter, opt: torch.optim.Optimizer, state: LoopState, *, finished: bool) -> None:
        if self.path is not None:
            _save_checkpoint(self.path, adapter, opt, state, self.cfg, self.heads, self.key_groups, finished)

    def after_step(self, adapter: HeadAdapter, opt: torch.optim.Optimizer, state: LoopState) -> None:
        """Write a checkpoint every ``cfg.checkpoint_every`` steps (0: never during the run)."""
        every = self.cfg.checkpoint_every
        if every and state.step % every == 0:
            self.save(adapter, opt, state, finished=False)


def _save_checkpoint(path: Path, adapter: HeadAdapter, opt: torch.optim.Optimizer, state: LoopState, cfg: NASAConfig,
                     heads: list[Head], key_groups: list[Head], finished: bool) -> None:
    payload = {
        "version": 1,
        "config": cfg.training_identity(),
        "heads": [format_head(h) for h in heads],
        "key_groups": [format_head(g) for g in key_groups],
        "adapter": adapter.to_tensors(),
        "optimizer": opt.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "state": dataclasses.asdict(state) | {"best_tensors": state.best_tensors},
        "finished": finished,
    }
    with writer_only() as write:  # data-parallel: rank 0 writes, every rank waits for it
        if write:
            with atomic_path(path) as tmp:
                torch.save(payload, tmp)


def _load_checkpoint(path: Path, adapter: HeadAdapter, opt: torch.optim.Optimizer, cfg: NASAConfig,
                     heads: list[Head], key_groups: list[Head]) -> tuple[LoopState, bool]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable: {exc}") from None
    if payload.get("config") != cfg.training_identity():
        diff = {k: (payload.get("config", {}).get(k), v) for k, v in cfg.training_identity().items() if payload.get("config", {}).get(k) != v}
        raise CheckpointError(f"checkpoint {path} was written with another config (checkpoint vs now: {diff}); start a fresh run or restore the config")
    if payload["heads"] != [format_head(h) for h in heads] or payload["key_groups"] != [format_head(g) for g in key_groups]:
        raise CheckpointError(f"checkpoint {path} trains heads {payload['heads']}, not {[format_head(h) for h in heads]}")
    adapter.load_tensors(payload["adapter"], source=str(path))
    opt.load_state_dict(payload["optimizer"])
    torch.set_rng_state(payload["torch_rng"])
    raw = payload["state"]
    state = LoopState(**{f.name: raw[f.name] for f in dataclasses.fields(LoopState)})
    return state, bool(payload.get("finished"))
