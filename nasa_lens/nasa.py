"""NASA, the head-restricted fine-tune: kept as a re-export of :mod:`nasa_lens.finetune` so notebooks and user
code that import ``nasa_lens.nasa`` keep working. New code imports :mod:`nasa_lens.finetune`."""
from __future__ import annotations

from nasa_lens.adapters import AdapterError, HeadAdapter, attached_adapters, load_adapter, read_adapter_meta, save_adapter
from nasa_lens.finetune.checkpoint import LoopState as _LoopState
from nasa_lens.finetune.compare import (
    NEUTRAL_TEXT,
    ComparisonResult,
    arithmetic_accuracy,
    arithmetic_items,
    compare_methods,
    fit_threshold,
    general_ability,
    lm_loss,
)
from nasa_lens.finetune.config import NASAConfig
from nasa_lens.finetune.data import _BalancedBatches, holdout_split
from nasa_lens.finetune.result import TrainResult
from nasa_lens.finetune.run import train_nasa
from nasa_lens.finetune.selection import key_groups_for, nas_ranking, select_heads
from nasa_lens.finetune.train import _stop_value, _train_heads, _validate, batch_loss, hooks_remaining, nas_targets
from nasa_lens.vocab import CHECKPOINT_FILE

__all__ = [
    "NASAConfig",
    "TrainResult",
    "ComparisonResult",
    "HeadAdapter",
    "AdapterError",
    "NEUTRAL_TEXT",
    "CHECKPOINT_FILE",
    "train_nasa",
    "select_heads",
    "key_groups_for",
    "holdout_split",
    "batch_loss",
    "compare_methods",
    "fit_threshold",
    "lm_loss",
    "arithmetic_items",
    "arithmetic_accuracy",
    "general_ability",
    "load_adapter",
    "save_adapter",
    "read_adapter_meta",
    "attached_adapters",
    "hooks_remaining",
]
