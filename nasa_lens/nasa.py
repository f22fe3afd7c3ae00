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

Checks (:func:`compare_methods`)
    Before/after bias metrics (:func:`nasa_lens.evaluate.evaluate`) on held-out splits and on datasets never
    trained on; the NAS of the trained heads before/after; general ability (language-model loss on
    :data:`NEUTRAL_TEXT`, next-token arithmetic accuracy on :func:`arithmetic_items`); baselines with the same
    data and step budget: the same number of random heads, all heads' q/k rows, and a decision threshold
    fitted on the training split (no training). One tidy DataFrame: ``method, dataset, metric, value,
    ci_low, ci_high, n_params, seconds``.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
import random
import re
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from nasa_lens.adapters import (
    ADAPTER_FILE,
    ADAPTER_META_FILE,
    AdapterError,
    HeadAdapter,
    _model_shape,
    attached_adapters,
    load_adapter,
    projection_module,
    read_adapter_meta,
    save_adapter,
)
from nasa_lens.evaluate import METRIC_KEYS, EvalResult, answer_logits, bias_metrics, evaluate, predict, result_from_predictions
from nasa_lens.heads import Head, HeadSpecError, format_head, format_heads, parse_head, parse_heads, ranked_heads
from nasa_lens.io import atomic_path, read_json, write_json
from nasa_lens.prompts import PromptBatch, PromptFormat, build_batch

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel

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

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
_FORMATS = ("yes-no", "no-yes", "true-false", "false-true")
_HEAD_SPEC_RE = re.compile(r"^(top|bottom):\d+$|^random:\d+(:\d+)?$|^all$|^incremental$")

# ---------------------------------------------------------------------------------------------- general text

NEUTRAL_TEXT: tuple[str, ...] = (
    "The library opens at nine in the morning and closes at six in the evening.",
    "Rain fell steadily over the valley for most of the afternoon.",
    "She placed the blue cup on the table next to the window.",
    "The train to the coast leaves from the second platform every hour.",
    "Bread is usually made from flour, water, salt and yeast.",
    "A group of children walked slowly along the river path after school.",
    "The museum has a small collection of old maps and wooden tools.",
    "He wrote a short letter to his aunt and posted it on the way to work.",
    "In spring the park is full of tulips, daffodils and young trees.",
    "The recipe asks for two eggs, a cup of milk and a spoon of sugar.",
    "Our neighbours painted their front door a bright shade of green.",
    "The meeting was moved from Tuesday to Thursday at the same time.",
    "Most birds in the garden are sparrows, robins and the occasional crow.",
    "The old bridge across the canal was repaired last summer.",
    "She keeps her notes in a thick notebook with a red cover.",
    "A light wind moved the curtains while the kettle was boiling.",
    "The shop on the corner sells newspapers, fruit and fresh flowers.",
    "They planted tomatoes and beans along the south wall of the house.",
    "The teacher asked the class to read the first chapter before Monday.",
    "At night the town is quiet except for the sound of the distant sea.",
)
"""Twenty neutral English sentences (our own text) for the language-model-loss check of :func:`lm_loss`."""


# ---------------------------------------------------------------------------------------------- config


@dataclass
class NASAConfig:
    """One NASA run (``nasa-lens finetune`` builds it from its flags). Every choice here is ours.

    Defaults, from our own runs on SmolLM2-135M-Instruct (StrategyQA + GSM8K-verify training splits, 2 CPU
    cores; README section "NASA", "Why the defaults"): ``heads="top:8"`` (the paper's NAS selection; in our
    comparison 8 random heads did about as well), full rows (``rank=None``), q rows only, ``lr=2e-3``,
    ``steps=150``, ``batch_size=8`` (not tuned by a sweep), ``lambda_nas=0``. The NAS-alignment term is off by
    default: at 30 steps (``lambda_nas=1``) and at 150 steps (``lambda_nas=0.1``) it drove the heads' NAS to ~0
    but left the test ``|pr_gap|`` no smaller than CE alone (mean 0.135 vs 0.105 over three test sets), with
    accuracy equal within noise.

    Attributes:
        heads: ``"top:K"``, ``"bottom:K"``, ``"random:K[:SEED]"``, ``"all"``, ``"incremental"`` or ``"L.H,L.H"``
            (or a list of ``(layer, head)``).
        rank: ``None`` trains full ``[d_head, d_model]`` row deltas; an int trains ``A @ B`` of that rank.
        train_k: also train key-projection rows (see ``key_rule``).
        key_rule: ``"complete"`` trains a key/value group's rows only if every query head of the group is
            selected (warns and skips otherwise); ``"any"`` trains every touched group.
        lr, weight_decay, betas, max_grad_norm: AdamW and gradient clipping (``None``: no clipping).
        steps: optimizer steps (per round with ``incremental``).
        batch_size: examples per step (label-balanced).
        lambda_nas: weight of the NAS-alignment term (0 = CE only).
        nas_target: ``"neutral"`` (0) or ``"label"`` (``-scale`` for gold yes, ``+scale`` for gold no).
        nas_target_scale: magnitude of the ``"label"`` target.
        nas_positions: query positions of the NAS term: ``"after"`` or ``"last"`` (as the scan).
        eval_every: validate every N steps (0: only before and after).
        patience: stop after this many validations without improvement (None: never stop early).
        early_stop_on: ``"val_loss"`` or ``"abs_pr_gap"``.
        min_delta: an improvement must beat the best value by more than this.
        restore_best: end with the best validated deltas (else the last ones).
        seed: seeds the batch order and the low-rank initialisation.
        checkpoint_every: write a resumable checkpoint every N steps (0: only at the end, when a folder is given).
        scan_limit: training examples used for the ``top:K`` ranking and the ``incremental`` rescans.
        format: prompt format preset (``yes-no``, ``no-yes``, ``true-false``, ``false-true``).
        incremental_start, incremental_max_rounds, incremental_gap: see the module docstring.
        init_scale: std of the random low-rank factor ``B`` is ``init_scale / sqrt(d_model)``.
        model_mode: ``"eval"`` (default; no dropout, deterministic) or ``"train"`` during the steps.
        eval_batch_size: batch size of the validation passes.
        n_boot: bootstrap resamples for the before/after confidence intervals.
        progress: show tqdm bars.
    """

    heads: str | list[Head] = "top:8"
    rank: int | None = None
    train_k: bool = False
    key_rule: Literal["complete", "any"] = "complete"
    lr: float = 2e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float | None = 1.0
    steps: int = 150
    batch_size: int = 8
    lambda_nas: float = 0.0
    nas_target: Literal["neutral", "label"] = "neutral"
    nas_target_scale: float = 1.0
    nas_positions: Literal["after", "last"] = "after"
    eval_every: int = 25
    patience: int | None = None
    early_stop_on: Literal["val_loss", "abs_pr_gap"] = "val_loss"
    min_delta: float = 0.0
    restore_best: bool = True
    seed: int = 0
    checkpoint_every: int = 0
    scan_limit: int = 64
    format: str = "yes-no"
    incremental_start: int = 1
    incremental_max_rounds: int = 4
    incremental_gap: float = 0.05
    init_scale: float = 1.0
    model_mode: Literal["eval", "train"] = "eval"
    eval_batch_size: int = 16
    n_boot: int = 200
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.heads, str):
            spec = self.heads.strip()
            if not spec:
                raise ValueError("heads must not be empty: give top:K, random:K, all, incremental or L.H,L.H")
            if not _HEAD_SPEC_RE.match(spec):
                try:
                    [parse_head(t) for t in spec.split(",") if t.strip()]
                except HeadSpecError as exc:
                    raise ValueError(
                        f"heads {self.heads!r} is not a head spec: expected top:K, bottom:K, random:K[:SEED], all, "
                        f"incremental or a list L.H,L.H ({exc})"
                    ) from None
            self.heads = spec
        else:
            heads = [tuple(int(x) for x in h) for h in self.heads]
            if not heads:
                raise ValueError("heads must name at least one head")
            self.heads = [(h[0], h[1]) for h in heads]
        if self.rank is not None and (isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1):
            raise ValueError(f"rank must be a positive int or None (full rows), got {self.rank!r}")
        if self.key_rule not in ("complete", "any"):
            raise ValueError(f"key_rule must be 'complete' or 'any', got {self.key_rule!r}")
        _positive("lr", self.lr, float)
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ValueError(f"max_grad_norm must be > 0 or None, got {self.max_grad_norm}")
        _positive("steps", self.steps, int)
        _positive("batch_size", self.batch_size, int)
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (a batch holds both labels), got {self.batch_size}")
        if self.lambda_nas < 0 or not math.isfinite(self.lambda_nas):
            raise ValueError(f"lambda_nas must be a finite number >= 0, got {self.lambda_nas}")
        if self.nas_target not in ("neutral", "label"):
            raise ValueError(f"nas_target must be 'neutral' or 'label', got {self.nas_target!r}")
        if self.nas_target_scale <= 0:
            raise ValueError(f"nas_target_scale must be > 0, got {self.nas_target_scale}")
        if self.nas_positions not in ("after", "last"):
            raise ValueError(f"nas_positions must be 'after' or 'last', got {self.nas_positions!r}")
        if self.eval_every < 0:
            raise ValueError(f"eval_every must be >= 0 (0: only before and after), got {self.eval_every}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience}")
        if self.early_stop_on not in ("val_loss", "abs_pr_gap"):
            raise ValueError(f"early_stop_on must be 'val_loss' or 'abs_pr_gap', got {self.early_stop_on!r}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        _positive("scan_limit", self.scan_limit, int)
        if self.format not in _FORMATS:
            raise ValueError(f"format must be one of {list(_FORMATS)}, got {self.format!r}")
        _positive("incremental_start", self.incremental_start, int)
        _positive("incremental_max_rounds", self.incremental_max_rounds, int)
        if self.init_scale <= 0:
            raise ValueError(f"init_scale must be > 0, got {self.init_scale}")
        if self.model_mode not in ("eval", "train"):
            raise ValueError(f"model_mode must be 'eval' or 'train', got {self.model_mode!r}")
        _positive("eval_batch_size", self.eval_batch_size, int)
        if self.n_boot < 0:
            raise ValueError(f"n_boot must be >= 0, got {self.n_boot}")

    def replace(self, **changes: Any) -> NASAConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["heads"] = self.heads if isinstance(self.heads, str) else format_heads(self.heads)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NASAConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown NASAConfig fields {sorted(unknown)}")
        return cls(**{k: (tuple(v) if k == "betas" else v) for k, v in d.items()})

    def training_identity(self) -> dict[str, Any]:
        """The fields a checkpoint must agree on to be resumed (everything that changes the trajectory)."""
        d = self.to_dict()
        for k in ("progress", "checkpoint_every", "eval_batch_size", "n_boot"):
            d.pop(k)
        return d


def _positive(name: str, value: Any, kind: type) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int) or not value > 0:
        raise ValueError(f"{name} must be a positive {'number' if kind is float else 'int'}, got {value!r}")


# ---------------------------------------------------------------------------------------------- heads


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
    from nasa_lens.nas import scan_nas

    examples = list(examples)[:limit]
    if not examples:
        raise ValueError("a top:K / incremental head selection needs training examples to scan")
    return scan_nas(model, examples, fmt, positions=positions, batch_size=batch_size, progress=progress).mean


# ---------------------------------------------------------------------------------------------- data


def holdout_split(examples: Sequence[Any], fraction: float, seed: int = 0) -> tuple[list[Any], list[Any]]:
    """``(train, validation)``: ``fraction`` of each label held out for validation, chosen by ``seed``."""
    if not 0 <= fraction < 1:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    rng = random.Random(seed)
    train, val = [], []
    for label in ("yes", "no"):
        rows = [ex for ex in examples if getattr(ex, "label", None) == label]
        rng.shuffle(rows)
        k = int(round(fraction * len(rows)))
        val.extend(rows[:k])
        train.extend(rows[k:])
    rng.shuffle(train)
    rng.shuffle(val)
    return train, val


class _BalancedBatches:
    """The rows of step ``s``: a pure function of ``(seed, s)`` (no sampler state, so resuming is exact).

    Each label's rows are walked through seeded permutations, epoch after epoch; a batch takes
    ``ceil(b/2)`` rows of one label and ``floor(b/2)`` of the other (the label with the extra row alternates)."""

    def __init__(self, labels: Sequence[str], batch_size: int, seed: int) -> None:
        self.by_label = {lab: [i for i, x in enumerate(labels) if x == lab] for lab in ("yes", "no")}
        for lab, rows in self.by_label.items():
            if not rows:
                raise ValueError(f"the training data has no {lab!r} examples: NASA needs both labels")
        self.batch_size = batch_size
        self.seed = seed
        self._perm_cache: dict[tuple[str, int], list[int]] = {}

    def _perm(self, label: str, epoch: int) -> list[int]:
        key = (label, epoch)
        if key not in self._perm_cache:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 2 + (label == "no"))
            rows = self.by_label[label]
            self._perm_cache[key] = [rows[i] for i in torch.randperm(len(rows), generator=g).tolist()]
            if len(self._perm_cache) > 8:
                self._perm_cache.pop(next(iter(self._perm_cache)))
        return self._perm_cache[key]

    def _take(self, label: str, start: int, count: int) -> list[int]:
        n = len(self.by_label[label])
        return [self._perm(label, (start + j) // n)[(start + j) % n] for j in range(count)]

    def rows(self, step: int) -> list[int]:
        b = self.batch_size
        lo, hi = b // 2, b - b // 2
        # rows of each label used before this step (the odd row alternates between the labels)
        n_yes = step * lo + (step + 1) // 2 * (hi - lo)
        n_no = step * lo + step // 2 * (hi - lo)
        k_yes = hi if step % 2 == 0 else lo
        rows = self._take("yes", n_yes, k_yes) + self._take("no", n_no, b - k_yes)
        order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(self.seed * 7_919 + step)).tolist()
        return [rows[i] for i in order]


# ---------------------------------------------------------------------------------------------- loss


def nas_targets(labels: Int[Tensor, " example"], target: str, scale: float) -> Float[Tensor, " example"]:
    """The NAS each example's selected heads are pulled to: 0 (``"neutral"``) or ``-scale`` / ``+scale`` for
    gold yes / no (``"label"``)."""
    if target == "neutral":
        return torch.zeros(labels.shape, dtype=torch.float32, device=labels.device)
    return torch.where(labels == 1, -scale, scale).float()


def _train_answer_logits(model: LoadedModel, batch: PromptBatch, hooks: Sequence[Any]) -> Float[Tensor, "example 2"]:
    """The (yes, no) answer logits at the last position, unembedding only that position (``logits_to_keep=1``,
    a Hugging Face causal-LM argument): the training objective needs nothing else, and the full unembedding
    is a large share of a small model's step. Falls back to :func:`nasa_lens.evaluate.answer_logits`."""
    bridge = model.bridge
    try:
        logits = bridge.run_with_hooks(batch.input_ids, fwd_hooks=list(hooks), logits_to_keep=1, **batch.forward_kwargs())
    except TypeError:
        return answer_logits(model, batch, hooks)
    if logits.ndim != 3 or logits.shape[1] != 1:
        return answer_logits(model, batch, hooks)
    return logits[:, -1, [batch.answer_yes_id, batch.answer_no_id]].float()


def batch_loss(
    model: LoadedModel,
    batch: PromptBatch,
    heads: Sequence[Head],
    *,
    lambda_nas: float = 0.0,
    nas_target: str = "neutral",
    nas_target_scale: float = 1.0,
    nas_positions: str = "after",
) -> tuple[Tensor, dict[str, float]]:
    """``(loss, parts)`` for one batch (with whatever adapter is attached): 2-way CE over the answer tokens
    plus ``lambda_nas`` times the squared error of the selected heads' NAS against the target."""
    labels = batch.labels
    if bool((labels < 0).any()):
        raise ValueError("every training example needs a gold label 'yes' or 'no'")
    hooks, store = [], {}
    if lambda_nas > 0:
        from nasa_lens.nas import nas_hooks

        layers = sorted({layer for layer, _ in heads})
        hooks, store = nas_hooks(batch, layers=layers, positions=nas_positions, detach=False)
    pair = _train_answer_logits(model, batch, hooks)  # [example, 2]: (yes, no)
    ce = F.cross_entropy(pair, (labels == 0).long())
    parts = {"ce": float(ce.detach())}
    loss = ce
    if lambda_nas > 0:
        nas = torch.stack([store[layer][:, h] for layer, h in heads], dim=-1)  # [example, head]
        target = nas_targets(labels, nas_target, nas_target_scale).to(nas.device)[:, None]
        nas_loss = ((nas - target) ** 2).mean()
        loss = ce + lambda_nas * nas_loss
        parts["nas_loss"] = float(nas_loss.detach())
        parts["nas_mean"] = float(nas.detach().mean())
    parts["loss"] = float(loss.detach())
    return loss, parts


# ---------------------------------------------------------------------------------------------- result


@dataclass
class TrainResult:
    """A NASA run: the adapter, the heads, the history and the before/after validation results.

    ``history`` rows are ``{"step", "split", "metric", "value"}`` (split ``"train"``: loss, ce, nas_loss,
    grad_norm; ``"val"``: loss and the bias metrics). ``before`` / ``after`` are the validation results at
    step 0 and at the kept step (the best validated one with ``restore_best``), or None without validation.
    """

    adapter: HeadAdapter
    config: NASAConfig
    heads: list[Head]
    key_groups: list[Head]
    skipped_key_groups: list[Head]
    history: list[dict[str, Any]]
    before: EvalResult | None
    after: EvalResult | None
    steps_done: int
    best_step: int
    stopped_early: bool
    seconds: float
    model: str = ""
    ranking: np.ndarray | None = None
    rounds: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n_params(self) -> int:
        return self.adapter.n_params

    def to_dataframe(self) -> pd.DataFrame:
        """The history, long format: ``step, split, metric, value``."""
        return pd.DataFrame(self.history, columns=["step", "split", "metric", "value"])

    def history_wide(self) -> pd.DataFrame:
        """One row per step and split, one column per metric."""
        df = self.to_dataframe()
        if df.empty:
            return df
        return df.pivot_table(index=["step", "split"], columns="metric", values="value").reset_index()

    def metrics_json(self) -> dict[str, Any]:
        """``{"before": {...}, "after": {...}}`` with the metric keys of ``nasa-lens eval`` (what ``metrics.json`` holds)."""
        return {
            "before": self.before.metrics_json() if self.before else None,
            "after": self.after.metrics_json() if self.after else None,
            "heads": [format_head(h) for h in self.heads],
            "key_groups": [format_head(g) for g in self.key_groups],
            "skipped_key_groups": [format_head(g) for g in self.skipped_key_groups],
            "n_params": self.n_params,
            "steps_done": self.steps_done,
            "best_step": self.best_step,
            "stopped_early": self.stopped_early,
            "seconds": self.seconds,
            "rounds": self.rounds,
        }

    def summary(self) -> str:
        def gap(r: EvalResult | None) -> str:
            return "n/a" if r is None else f"{r.metrics['pr_gap']:.3f}"

        return (
            f"NASA on {self.model}: heads {format_heads(self.heads)} ({self.n_params:,} params), {self.steps_done} steps "
            f"in {self.seconds:.0f} s; validation pr_gap {gap(self.before)} -> {gap(self.after)}"
            + (f", accuracy {self.before.metrics['accuracy']:.3f} -> {self.after.metrics['accuracy']:.3f}" if self.before and self.after else "")
        )

    def save(self, out_dir: str | Path, model: LoadedModel) -> Path:
        """Write ``adapter.safetensors``, ``adapter.json``, ``metrics.json`` and ``history.csv`` into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        metrics = self.metrics_json()
        save_adapter(
            out,
            self.adapter,
            model,
            config=self.config.to_dict(),
            metrics={k: metrics[k] for k in ("before", "after", "n_params", "steps_done", "best_step", "stopped_early", "seconds")},
            extra={"skipped_key_groups": metrics["skipped_key_groups"], "rounds": self.rounds},
        )
        write_json(out / "metrics.json", metrics)
        with atomic_path(out / "history.csv") as tmp:
            self.to_dataframe().to_csv(tmp, index=False)
        return out


# ---------------------------------------------------------------------------------------------- training


@dataclass
class _LoopState:
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


def hooks_remaining(model: LoadedModel) -> list[str]:
    """Names of every place a hook is still attached: bridge hook points and the q/k projection modules."""
    out = []
    for name, hp in model.bridge.hook_dict.items():
        if getattr(hp, "fwd_hooks", None) or getattr(hp, "bwd_hooks", None):
            out.append(name)
    for layer in range(model.n_layers):
        for kind in ("q", "k"):
            mod = projection_module(model, layer, kind)
            if mod._forward_hooks or mod._forward_pre_hooks:
                out.append(f"blocks.{layer}.attn.{kind} (torch forward hook)")
    return out


def _validate(model: LoadedModel, examples: Sequence[Any], fmt: PromptFormat, cfg: NASAConfig) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Bias metrics and mean CE on the validation examples (with the attached adapter); plus ``(p_yes, logit_diff)``."""
    bridge = model.bridge
    mode = bridge.training
    bridge.eval()
    try:
        p, d = predict(model, examples, fmt, batch_size=cfg.eval_batch_size, progress=False)
    finally:
        bridge.train(mode)
    labels = np.array([1 if ex.label == "yes" else 0 for ex in examples])
    m = bias_metrics(labels, p, 0.5, d)
    # 2-way CE from the logit difference: softplus(-d) for gold yes, softplus(d) for gold no.
    dd = torch.as_tensor(d, dtype=torch.float64)
    ce = torch.where(torch.as_tensor(labels == 1), F.softplus(-dd), F.softplus(dd))
    m["loss"] = float(ce.mean())
    return m, p, d


def _stop_value(metrics: Mapping[str, float], on: str) -> float:
    if on == "val_loss":
        return metrics["loss"]
    gap = metrics["pr_gap"]
    return 1.0 if math.isnan(gap) else abs(gap)


def _save_checkpoint(path: Path, adapter: HeadAdapter, opt: torch.optim.Optimizer, state: _LoopState, cfg: NASAConfig, heads, key_groups, finished: bool) -> None:
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
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _load_checkpoint(path: Path, adapter: HeadAdapter, opt: torch.optim.Optimizer, cfg: NASAConfig, heads, key_groups) -> tuple[_LoopState, bool]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"checkpoint {path} is corrupt or unreadable: {exc}") from None
    if payload.get("config") != cfg.training_identity():
        diff = {k: (payload.get("config", {}).get(k), v) for k, v in cfg.training_identity().items() if payload.get("config", {}).get(k) != v}
        raise ValueError(f"checkpoint {path} was written with another config (checkpoint vs now: {diff}); start a fresh run or restore the config")
    if payload["heads"] != [format_head(h) for h in heads] or payload["key_groups"] != [format_head(g) for g in key_groups]:
        raise ValueError(f"checkpoint {path} trains heads {payload['heads']}, not {[format_head(h) for h in heads]}")
    adapter.load_tensors(payload["adapter"], source=str(path))
    opt.load_state_dict(payload["optimizer"])
    torch.set_rng_state(payload["torch_rng"])
    raw = payload["state"]
    state = _LoopState(**{f.name: raw[f.name] for f in dataclasses.fields(_LoopState)})
    return state, bool(payload.get("finished"))


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
        raise ValueError("no training examples")
    merged = [a for a in attached_adapters(model) if a.state == "merged"]
    if merged:
        raise AdapterError("an adapter is merged into the model; remove() it before training a new one")
    fmt = PromptFormat.named(cfg.format)
    t0 = time.perf_counter()
    if cfg.heads == "incremental":
        return _train_incremental(model, train, val, cfg, fmt, ranking, checkpoint_dir, resume, callback, t0)
    heads, ranking = select_heads(
        model, cfg.heads, train, fmt=fmt, ranking=ranking, scan_limit=cfg.scan_limit, positions=cfg.nas_positions,
        batch_size=cfg.eval_batch_size, progress=cfg.progress,
    )
    select_seconds = time.perf_counter() - t0
    result = _train_heads(model, heads, train, val, cfg, fmt, checkpoint_dir=checkpoint_dir, resume=resume, callback=callback)
    result.ranking = ranking
    result.seconds += select_seconds  # training time (summed over resumed runs) + head selection
    return result


def _train_incremental(model, train, val, cfg, fmt, ranking, checkpoint_dir, resume, callback, t0) -> TrainResult:
    if ranking is None:
        ranking = nas_ranking(model, train, fmt, limit=cfg.scan_limit, positions=cfg.nas_positions, batch_size=cfg.eval_batch_size)
    heads = ranked_heads(ranking)[: cfg.incremental_start]
    prev: HeadAdapter | None = None
    rounds: list[dict[str, Any]] = []
    scan_rows = train[: cfg.scan_limit]
    result: TrainResult | None = None
    for r in range(cfg.incremental_max_rounds):
        ck = Path(checkpoint_dir) / f"round{r}" if checkpoint_dir is not None else None
        result = _train_heads(model, heads, train, val, cfg, fmt, init=prev, checkpoint_dir=ck, resume=resume, callback=callback, tag=f"round {r}")
        from nasa_lens.nas import scan_nas

        with result.adapter.applied(model):
            scan = scan_nas(model, scan_rows, fmt, positions=cfg.nas_positions, batch_size=cfg.eval_batch_size, progress=False)
        m = bias_metrics(scan.labels, scan.p_yes)
        # Nothing predicted "yes" leaves precision undefined; that is the strongest negative bias: count it as 1.
        gap = m["pr_gap"] if not math.isnan(m["pr_gap"]) else (1.0 if m["recall"] == 0 else math.nan)
        rounds.append({"round": r, "heads": [format_head(h) for h in heads], "train_pr_gap": gap, "steps": result.steps_done})
        logger.info("incremental round %d: heads %s, training pr_gap %.3f", r, format_heads(heads), gap)
        if not (gap > cfg.incremental_gap) or r + 1 == cfg.incremental_max_rounds:
            break
        nxt = next((h for h in ranked_heads(scan.mean) if h not in heads), None)
        if nxt is None:
            break
        rounds[-1]["added_next"] = format_head(nxt)
        heads = [*heads, nxt]
        prev = result.adapter
    assert result is not None
    result.rounds = rounds
    result.ranking = ranking
    result.seconds = time.perf_counter() - t0
    return result


def _train_heads(
    model: LoadedModel,
    heads: list[Head],
    train: list[Any],
    val: list[Any],
    cfg: NASAConfig,
    fmt: PromptFormat,
    *,
    init: HeadAdapter | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    tag: str = "",
) -> TrainResult:
    key_groups, skipped = key_groups_for(model, heads, train_k=cfg.train_k, key_rule=cfg.key_rule)
    generator = torch.Generator().manual_seed(cfg.seed)
    adapter = HeadAdapter(
        heads, key_groups, shape=_model_shape(model), rank=cfg.rank, base_model=model.name,
        generator=generator, init_scale=cfg.init_scale,
    ).to(model.device)
    if init is not None:  # carry over the deltas of heads trained in an earlier round
        own = adapter.to_tensors()
        own.update({k: v for k, v in init.to_tensors().items() if k in own})
        adapter.load_tensors(own)
    opt = torch.optim.AdamW(adapter.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas)
    state = _LoopState()
    ckpt = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None
    finished = False
    if resume and ckpt is not None and ckpt.is_file():
        state, finished = _load_checkpoint(ckpt, adapter, opt, cfg, heads, key_groups)
        logger.info("resumed from %s at step %d", ckpt, state.step)
    sampler = _BalancedBatches([ex.label for ex in train], cfg.batch_size, cfg.seed)
    bridge = model.bridge
    was_training = bridge.training
    start = time.perf_counter() - state.seconds
    bar = tqdm(total=cfg.steps, initial=state.step, desc=f"NASA {tag}".strip(), disable=not cfg.progress, leave=False)

    def evaluate_now() -> None:
        m, p, d = _validate(model, val, fmt, cfg)
        state.last_preds = (p, d)
        for k in ("loss", *METRIC_KEYS):
            state.history.append({"step": state.step, "split": "val", "metric": k, "value": m[k]})
        state.last_gap = m["pr_gap"]
        if state.step == 0:
            state.before_preds = (p, d)
        value = _stop_value(m, cfg.early_stop_on)
        if value < state.best_value - cfg.min_delta:
            state.best_value, state.best_step, state.bad_evals = value, state.step, 0
            state.best_tensors = adapter.to_tensors()
            state.best_preds = (p, d)
        elif state.step > 0:
            state.bad_evals += 1
            if cfg.patience is not None and state.bad_evals >= cfg.patience:
                state.stopped_early = True
                logger.info("early stop at step %d (best %s %.4f at step %d)", state.step, cfg.early_stop_on, state.best_value, state.best_step)

    try:
        bridge.train(cfg.model_mode == "train")
        with adapter.applied(model):
            if val and state.step == 0 and state.before_preds is None:
                evaluate_now()
            while not finished and state.step < cfg.steps and not state.stopped_early:
                rows = sampler.rows(state.step)
                batch = build_batch(model, [train[i] for i in rows], fmt)
                opt.zero_grad(set_to_none=True)
                loss, parts = batch_loss(
                    model, batch, heads, lambda_nas=cfg.lambda_nas, nas_target=cfg.nas_target,
                    nas_target_scale=cfg.nas_target_scale, nas_positions=cfg.nas_positions,
                )
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"NASA loss is {float(loss)} at step {state.step + 1}: lower lr ({cfg.lr})")
                loss.backward()
                params = list(adapter.parameters())
                if cfg.max_grad_norm is not None:
                    parts["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm))
                else:
                    parts["grad_norm"] = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None])))
                opt.step()
                state.step += 1
                for k, v in parts.items():
                    state.history.append({"step": state.step, "split": "train", "metric": k, "value": v})
                last = state.step == cfg.steps
                if val and ((cfg.eval_every and state.step % cfg.eval_every == 0) or last):
                    evaluate_now()
                bar.update(1)
                bar.set_postfix(loss=f"{parts['loss']:.3f}", gap=f"{state.last_gap:.3f}")
                state.seconds = time.perf_counter() - start
                if ckpt is not None and cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0:
                    _save_checkpoint(ckpt, adapter, opt, state, cfg, heads, key_groups, finished=False)
                if callback is not None:
                    callback(state.step, parts)
            state.seconds = time.perf_counter() - start
            if ckpt is not None:
                _save_checkpoint(ckpt, adapter, opt, state, cfg, heads, key_groups, finished=True)
    finally:
        bar.close()
        bridge.train(was_training)
    kept_preds = state.last_preds
    best_step = state.step
    if val and cfg.restore_best and state.best_tensors is not None:
        adapter.load_tensors(state.best_tensors)
        kept_preds, best_step = state.best_preds, state.best_step
    before = after = None
    if val:
        labels = np.array([1 if ex.label == "yes" else 0 for ex in val])
        ids = [str(getattr(ex, "id", i)) for i, ex in enumerate(val)]
        name = getattr(val, "name", "validation")
        before = result_from_predictions(ids, labels, *state.before_preds, n_boot=cfg.n_boot, seed=cfg.seed, model=model.name, dataset=name, format=fmt.label)
        after = result_from_predictions(ids, labels, *kept_preds, n_boot=cfg.n_boot, seed=cfg.seed, model=model.name, dataset=name, format=fmt.label)
    adapter.requires_grad_(False)
    return TrainResult(
        adapter=adapter,
        config=cfg,
        heads=list(heads),
        key_groups=key_groups,
        skipped_key_groups=skipped,
        history=state.history,
        before=before,
        after=after,
        steps_done=state.step,
        best_step=best_step,
        stopped_early=state.stopped_early,
        seconds=state.seconds,
        model=model.name,
    )


# ---------------------------------------------------------------------------------------------- general ability


def lm_loss(model: LoadedModel, texts: Sequence[str] = NEUTRAL_TEXT, *, batch_size: int = 8) -> np.ndarray:
    """Per-text mean next-token negative log-likelihood (nats/token) of ``texts`` (with attached adapters)."""
    tok = model.tokenizer
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start : start + batch_size])
            enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=True)
            ids, mask = enc["input_ids"].to(model.device), enc["attention_mask"].to(model.device)
            logits = model.bridge(ids, attention_mask=mask).float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
            m = mask[:, 1:].float() * mask[:, :-1].float()
            out.extend(((-logp * m).sum(1) / m.sum(1)).cpu().tolist())
    return np.asarray(out)


def arithmetic_items(n: int = 40, seed: int = 0) -> list[tuple[str, int]]:
    """``n`` deterministic one-digit-answer questions ``("What is 3 + 4?", 7)``: sums and differences of
    one-digit numbers with an answer in 0..9 (so every candidate answer is one token)."""
    rng = random.Random(seed)
    pool = [(f"What is {a} + {b}?", a + b) for a in range(10) for b in range(10) if a + b <= 9]
    pool += [(f"What is {a} - {b}?", a - b) for a in range(10) for b in range(10) if a >= b]
    rng.shuffle(pool)
    return pool[:n]


def _arith_prompt(model: LoadedModel, question: str) -> tuple[str, str]:
    """The prompt and the prefix of the digit tokens (chat: reply starts fresh; plain: after ``Answer:``)."""
    user = f"{question} Reply with the number only."
    if model.chat:
        text = model.tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)
        return text, ""
    return f"{user}\nAnswer:", " "


def arithmetic_accuracy(model: LoadedModel, items: Sequence[tuple[str, int]] | None = None, *, batch_size: int = 16) -> np.ndarray:
    """Per item 1/0: is the right digit the highest-logit of the ten digit tokens at the next position?

    Our general-ability check (not yes/no): chance is 0.1."""
    items = list(items if items is not None else arithmetic_items())
    tok = model.tokenizer
    prefix = _arith_prompt(model, items[0][0])[1]
    digit_ids = []
    for d in range(10):
        ids = tok(f"{prefix}{d}", add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"digit {prefix}{d!s} is not one token for {model.name!r}: {ids}")
        digit_ids.append(ids[0])
    digit_t = torch.tensor(digit_ids, device=model.device)
    correct = []
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            texts = [_arith_prompt(model, q)[0] for q, _ in chunk]
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=not model.chat)
            logits = model.bridge(enc["input_ids"].to(model.device), attention_mask=enc["attention_mask"].to(model.device))
            pick = logits[:, -1, digit_t].argmax(-1).cpu()
            correct.extend((pick == torch.tensor([a for _, a in chunk])).int().tolist())
    return np.asarray(correct)


def general_ability(model: LoadedModel) -> dict[str, np.ndarray]:
    """``{"lm_loss": per-text NLL, "arith_accuracy": per-item 0/1}`` with whatever adapters are attached."""
    return {"lm_loss": lm_loss(model), "arith_accuracy": arithmetic_accuracy(model)}


# ---------------------------------------------------------------------------------------------- threshold baseline


def fit_threshold(labels: Sequence[int] | np.ndarray, p_yes: Sequence[float] | np.ndarray) -> float:
    """The decision threshold on ``p_yes`` (predict yes when ``p_yes > t``) that maximises balanced accuracy
    on these examples; ties go to the threshold with the smallest ``|pr_gap|``, then the one nearest 0.5."""
    y = np.asarray(labels, int)
    p = np.asarray(p_yes, float)
    if not ((y == 1).any() and (y == 0).any()):
        raise ValueError("fitting a threshold needs both labels")
    u = np.unique(p)
    cands = np.concatenate([[u[0] - 1e-9], (u[:-1] + u[1:]) / 2, [u[-1]]]) if len(u) > 1 else np.array([u[0] - 1e-9, u[0]])
    best, best_key = 0.5, None
    for t in cands:
        pred = p > t
        tpr = (pred & (y == 1)).sum() / (y == 1).sum()
        tnr = (~pred & (y == 0)).sum() / (y == 0).sum()
        gap = bias_metrics(y, p, float(t))["pr_gap"]
        key = (round((tpr + tnr) / 2, 12), -(abs(gap) if not math.isnan(gap) else 1.0), -abs(t - 0.5))
        if best_key is None or key > best_key:
            best, best_key = float(t), key
    return best


# ---------------------------------------------------------------------------------------------- comparison


@dataclass
class ComparisonResult:
    """Before/after and baselines side by side.

    ``frame``: one row per (method, dataset, metric) with ``value, ci_low, ci_high, n_params, seconds``.
    Methods: ``base`` (no change), ``threshold`` (fitted decision threshold, no training), ``nasa``,
    ``random`` (the same number of random heads), ``all`` (every head's q and k rows). Datasets: the
    evaluation sets by name plus ``neutral-text`` (metric ``lm_loss``) and ``arith-next-token`` (metric
    ``arith_accuracy``). NAS of each method's trained heads is in metrics ``nas_heads_before`` /
    ``nas_heads_after`` (mean over the heads and examples, 95% normal interval).
    """

    frame: pd.DataFrame
    train_results: dict[str, TrainResult] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dataframe(self) -> pd.DataFrame:
        return self.frame.copy()

    def table(self, metrics: Sequence[str] = ("pr_gap", "recall", "accuracy", "auroc"), *, with_ci: bool = False) -> pd.DataFrame:
        """Wide: rows ``(dataset, method)``, columns the metrics (and ``n_params``, ``seconds``)."""
        df = self.frame[self.frame.metric.isin(metrics)].copy()
        if with_ci:
            df["value"] = [f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for v, lo, hi in zip(df.value, df.ci_low, df.ci_high)]
        wide = df.pivot_table(index=["dataset", "method"], columns="metric", values="value", aggfunc="first")
        wide = wide[[m for m in metrics if m in wide.columns]]
        extra = self.frame.groupby("method")[["n_params", "seconds"]].first()
        wide = wide.join(extra, on="method")
        order = {m: i for i, m in enumerate(self.meta.get("methods", []))}
        return wide.reset_index().sort_values(["dataset", "method"], key=lambda s: s.map(order) if s.name == "method" else s).reset_index(drop=True)

    def save(self, out_dir: str | Path, model: LoadedModel | None = None) -> Path:
        """Write ``comparison.csv`` and ``comparison.json`` (and each trained adapter under ``adapters/METHOD``
        when ``model`` is given)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "comparison.csv") as tmp:
            self.frame.to_csv(tmp, index=False)
        write_json(out / "comparison.json", {"thresholds": self.thresholds, "meta": self.meta})
        if model is not None:
            for method, res in self.train_results.items():
                res.save(out / "adapters" / method, model)
        return out

    @classmethod
    def load(cls, out_dir: str | Path) -> ComparisonResult:
        out = Path(out_dir)
        meta = read_json(out / "comparison.json")
        return cls(frame=pd.read_csv(out / "comparison.csv"), thresholds=meta.get("thresholds", {}), meta=meta.get("meta", {}))


def _rows_from_eval(method: str, dataset: str, res: EvalResult, n_params: int, seconds: float) -> list[dict[str, Any]]:
    return [
        {"method": method, "dataset": dataset, "metric": k, "value": res.metrics[k], "ci_low": res.ci[k][0],
         "ci_high": res.ci[k][1], "n_params": n_params, "seconds": seconds}
        for k in METRIC_KEYS
    ]


def _mean_row(method: str, dataset: str, metric: str, values: np.ndarray, n_params: int, seconds: float) -> dict[str, Any]:
    v = np.asarray(values, float)
    mean = float(v.mean()) if len(v) else math.nan
    half = 1.96 * float(v.std(ddof=1)) / math.sqrt(len(v)) if len(v) > 1 else math.nan
    return {"method": method, "dataset": dataset, "metric": metric, "value": mean, "ci_low": mean - half,
            "ci_high": mean + half, "n_params": n_params, "seconds": seconds}


def _nas_of_heads(model: LoadedModel, examples: Sequence[Any], heads: Sequence[Head], fmt: PromptFormat, positions: str, batch_size: int) -> np.ndarray:
    """Per example, the mean NAS over ``heads`` (one no-grad forward per batch, only their layers hooked)."""
    from nasa_lens.nas import nas_for_batch
    from nasa_lens.prompts import iter_batches

    layers = sorted({layer for layer, _ in heads})
    li = {layer: i for i, layer in enumerate(layers)}
    out = np.full(len(examples), np.nan)
    for idx, batch in iter_batches(model, list(examples), fmt, batch_size):
        nas = nas_for_batch(model, batch, positions=positions, layers=layers)  # [example, layer, head]
        sel = torch.stack([nas[:, li[layer], h] for layer, h in heads], dim=-1)
        out[idx] = sel.mean(-1).cpu().double().numpy()
    return out


def compare_methods(
    model: LoadedModel,
    train: Sequence[Any],
    eval_sets: Mapping[str, Sequence[Any]],
    config: NASAConfig | None = None,
    *,
    val: Sequence[Any] | None = None,
    methods: Sequence[str] = ("base", "threshold", "nasa", "random", "all"),
    nas_sets: Sequence[str] | None = None,
    nas_limit: int = 48,
    general: bool = True,
    n_boot: int = 1000,
    random_seed: int = 0,
    all_train_k: bool = True,
    ranking: np.ndarray | None = None,
    threshold_limit: int | None = 128,
    progress: bool = True,
) -> ComparisonResult:
    """Train NASA and the baselines with the same data and step budget; evaluate every method everywhere.

    Args:
        model: the base model.
        train / val: training and validation examples (the same for every trained method).
        eval_sets: ``{name: examples}``: held-out splits of the training data and datasets never trained on.
        config: the NASA run; ``random`` uses the same config with as many random heads as ``nasa`` selected
            (``random:K:random_seed``), ``all`` every head (and their key rows when ``all_train_k``).
        methods: any of ``base``, ``threshold``, ``nasa``, ``random``, ``all`` (in that order in the table).
        nas_sets: eval sets on which the NAS of each method's heads is measured before/after (default:
            all), on the first ``nas_limit`` examples.
        general: also measure the LM loss on :data:`NEUTRAL_TEXT` and the arithmetic accuracy.
        n_boot: bootstrap resamples for the metric intervals.
        ranking: a ``[layer, head]`` mean-NAS array for ``nasa``'s ``top:K`` (else scanned on ``train``).
        threshold_limit: the ``threshold`` baseline is fitted on the first N training examples (None: all).
    """
    cfg = config or NASAConfig()
    known = ("base", "threshold", "nasa", "random", "all")
    bad = [m for m in methods if m not in known]
    if bad:
        raise ValueError(f"unknown methods {bad}; known: {list(known)}")
    fmt = PromptFormat.named(cfg.format)
    train = list(train)
    rows: list[dict[str, Any]] = []
    results: dict[str, TrainResult] = {}
    thresholds: dict[str, float] = {}
    base_evals: dict[str, EvalResult] = {}
    nas_sets = list(eval_sets) if nas_sets is None else list(nas_sets)

    def eval_all(method: str, n_params: int, seconds: float) -> dict[str, EvalResult]:
        evals = {}
        for name, ds in eval_sets.items():
            res = evaluate(model, ds, fmt, batch_size=cfg.eval_batch_size, n_boot=n_boot, seed=cfg.seed, progress=progress)
            evals[name] = res
            rows.extend(_rows_from_eval(method, name, res, n_params, seconds))
        if general:
            g = general_ability(model)
            rows.append(_mean_row(method, "neutral-text", "lm_loss", g["lm_loss"], n_params, seconds))
            rows.append(_mean_row(method, "arith-next-token", "arith_accuracy", g["arith_accuracy"], n_params, seconds))
        return evals

    if "base" in methods or "threshold" in methods:
        base_evals = eval_all("base", 0, 0.0)
    if "threshold" in methods:
        t0 = time.perf_counter()
        fit_rows = train[:threshold_limit] if threshold_limit else train
        p, _ = predict(model, fit_rows, fmt, batch_size=cfg.eval_batch_size, progress=progress, desc="threshold fit")
        y = np.array([1 if ex.label == "yes" else 0 for ex in fit_rows])
        t = fit_threshold(y, p)
        seconds = time.perf_counter() - t0
        thresholds["threshold"] = t
        for name, res in base_evals.items():
            r2 = result_from_predictions(res.ids, res.labels, res.p_yes, res.logit_diff, threshold=t, n_boot=n_boot,
                                         seed=cfg.seed, model=res.model, dataset=res.dataset, format=res.format)
            rows.extend(_rows_from_eval("threshold", name, r2, 1, seconds))
        if general:  # a threshold does not change the model
            rows.extend({**r, "method": "threshold", "n_params": 1, "seconds": seconds}
                        for r in list(rows) if r["method"] == "base" and r["dataset"] in ("neutral-text", "arith-next-token"))
        if "base" not in methods:
            rows[:] = [r for r in rows if r["method"] != "base"]

    k_heads: int | None = None
    for method in ("nasa", "random", "all"):
        if method not in methods:
            continue
        if method == "nasa":
            mcfg = cfg
        elif method == "random":
            if k_heads is None:
                k_heads = len(select_heads(model, cfg.heads if cfg.heads != "incremental" else "top:1", train, fmt=fmt, ranking=ranking,
                                           scan_limit=cfg.scan_limit)[0])
            mcfg = cfg.replace(heads=f"random:{k_heads}:{random_seed}")
        else:
            mcfg = cfg.replace(heads="all", train_k=all_train_k or cfg.train_k)
        logger.info("compare: training %s (%s)", method, mcfg.heads)
        res = train_nasa(model, train, val, mcfg, ranking=ranking if method == "nasa" else None)
        if method == "nasa":
            k_heads = len(res.heads)
            ranking = res.ranking if ranking is None else ranking
        results[method] = res
        nas_before = {name: _nas_of_heads(model, list(eval_sets[name])[:nas_limit], res.heads, fmt, cfg.nas_positions, cfg.eval_batch_size) for name in nas_sets}
        with res.adapter.applied(model):
            eval_all(method, res.n_params, res.seconds)
            for name in nas_sets:
                after = _nas_of_heads(model, list(eval_sets[name])[:nas_limit], res.heads, fmt, cfg.nas_positions, cfg.eval_batch_size)
                rows.append(_mean_row(method, name, "nas_heads_before", nas_before[name], res.n_params, res.seconds))
                rows.append(_mean_row(method, name, "nas_heads_after", after, res.n_params, res.seconds))
    frame = pd.DataFrame(rows, columns=["method", "dataset", "metric", "value", "ci_low", "ci_high", "n_params", "seconds"])
    meta = {
        "model": model.name,
        "methods": [m for m in known if m in methods],
        "config": cfg.to_dict(),
        "n_train": len(train),
        "n_val": len(val or []),
        "eval_sets": {k: len(v) for k, v in eval_sets.items()},
        "heads": {m: [format_head(h) for h in r.heads] for m, r in results.items()},
        "key_groups": {m: [format_head(g) for g in r.key_groups] for m, r in results.items()},
    }
    return ComparisonResult(frame=frame, train_results=results, thresholds=thresholds, meta=meta)
