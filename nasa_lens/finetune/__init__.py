"""NASA: fine-tune only the negative-attention heads (Yu et al., NAACL 2025, arXiv 2408.00137), and check it.

What is trained
    For the selected query heads only, the rows of ``q_proj`` that produce each head's query (and, with
    ``train_k``, the rows of ``k_proj`` of fully selected key/value groups), as separate additive deltas:
    full ``[d_head, d_model]`` matrices or, with ``rank=r``, low-rank ``A @ B``. The base weights stay
    frozen and untouched; the optimizer (AdamW) only ever sees the deltas. The deltas act through forward
    hooks on the projections (:class:`nasa_lens.adapters.HeadAdapter`), the same hooks a loaded adapter uses.

Grouped-query attention
    A key/value head is read by a whole group of query heads (SmolLM2: 9 query heads, 3 KV heads, groups of
    3), so training its key rows also moves query heads that were not selected. Rule (``key_rule``):
    ``"complete"`` (default) trains a group's key rows only when EVERY query head of the group is selected,
    and otherwise warns and skips it; ``"any"`` trains the key rows of every group that holds a selected head
    (documented leak). Trained and skipped groups are recorded in the result and the adapter metadata.

Objective (our choices; the paper's exact loss and hyper-parameters are not available to us)
    ``loss = CE + lambda_nas * L_nas``. CE is the cross-entropy of the 2-way softmax over
    ``[logit_yes, logit_no]`` at the last prompt position against the gold label, on label-balanced batches
    (every batch holds ``ceil(b/2)`` / ``floor(b/2)`` yes / no examples, alternating which label gets the odd
    one). ``L_nas`` is the mean squared error between the NAS of the selected heads (computed through
    :func:`nasa_lens.nas.nas_hooks` with ``detach=False``, the same hooks as the scan, on the selected heads'
    layers only) and a target: ``"neutral"`` (0) or ``"label"`` (``-nas_target_scale`` for gold "yes",
    ``+nas_target_scale`` for gold "no").

Head selection
    ``top:K`` (highest mean NAS on up to ``scan_limit`` training examples), ``bottom:K``, ``random:K[:SEED]``,
    ``all``, an explicit ``L.H,L.H`` list, or ``incremental``: start from the top ``incremental_start`` heads,
    train ``steps`` steps, rescan on the training examples with the adapter applied and, while the
    training-split ``pr_gap`` stays above ``incremental_gap`` and fewer than ``incremental_max_rounds`` rounds
    ran, add the highest-NAS head not yet selected and train another round (deltas carried over).

Loop
    Seeded and deterministic (the batch of step ``s`` is a pure function of ``seed`` and ``s``; low-rank
    factors are drawn from a seeded generator), a tqdm bar with loss and validation gap, validation every
    ``eval_every`` steps, early stopping (``patience`` validations without improvement of ``early_stop_on``),
    restore of the best validated deltas, and resumable checkpoints (deltas, optimizer state, step, RNG state,
    early-stopping state and history, written atomically): resuming gives exactly the deltas of an
    uninterrupted run. The bridge's train/eval mode is restored and every hook removed afterwards, also after
    an exception.

Checks
    NASA against its baselines (the same number of random heads, all heads' q/k rows, a fitted decision
    threshold) with every check (bias metrics, general ability, the NAS of the trained heads before/after) is
    a de-biasing comparison: :func:`nasa_lens.debias.compare_methods` (fixes ``nasa``, ``random``, ``all``
    wrap :func:`train_nasa`). This package only trains.


Modules
    :mod:`~nasa_lens.finetune.config` (``NASAConfig``, torch-free), :mod:`~nasa_lens.finetune.selection`
    (heads and key groups), :mod:`~nasa_lens.finetune.data` (hold-out, balanced batches),
    :mod:`~nasa_lens.finetune.train` (loss, loop, early stopping), :mod:`~nasa_lens.finetune.checkpoint`,
    :mod:`~nasa_lens.finetune.incremental`, :mod:`~nasa_lens.finetune.run` (``train_nasa``),
    :mod:`~nasa_lens.finetune.result` (``TrainResult``). (``nasa_lens.nasa``, its old path, is deprecated.)
"""
from __future__ import annotations

# The config is torch-free and imported eagerly (the CLI builds its flags from it); everything else is loaded
# on first use, so ``import nasa_lens.finetune.config`` does not import torch.
from nasa_lens.finetune.config import NASAConfig, NASAConfigError
from nasa_lens.vocab import CHECKPOINT_FILE

_LAZY = {
    "selection": ("key_groups_for", "select_heads", "nas_ranking"),
    "data": ("holdout_split", "BalancedBatches"),
    "train": ("batch_loss", "nas_targets", "hooks_remaining", "EarlyStopping", "train_heads"),
    "checkpoint": ("Checkpointer", "CheckpointError", "LoopState"),
    "result": ("TrainResult",),
    "run": ("train_nasa",),
    "adapters": ("HeadAdapter", "AdapterError", "load_adapter", "save_adapter", "read_adapter_meta", "attached_adapters"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

__all__ = [
    "NASAConfig",
    "NASAConfigError",
    "CHECKPOINT_FILE",
    *(n for names in _LAZY.values() for n in names if not n.startswith("_")),
]


_MOVED = {
    **dict.fromkeys(("ComparisonResult", "compare_methods", "fit_threshold"), "nasa_lens.debias"),
    **dict.fromkeys(("NEUTRAL_TEXT", "lm_loss", "arithmetic_items", "arithmetic_accuracy", "general_ability"), "nasa_lens.ability"),
}
"""Names that left with the comparison (finetune trains; :mod:`nasa_lens.debias` compares, :mod:`nasa_lens.ability` checks)."""


def __getattr__(name: str):
    if name in _MOVED:
        raise AttributeError(f"nasa_lens.finetune.{name} moved: import it from {_MOVED[name]}")
    if name in _WHERE:
        import importlib

        module = _WHERE[name]
        path = "nasa_lens.adapters" if module == "adapters" else f"nasa_lens.finetune.{module}"
        value = getattr(importlib.import_module(path), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nasa_lens.finetune' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
