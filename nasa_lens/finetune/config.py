"""The NASA config: one validated dataclass for a fine-tune run. Torch-free (the CLI builds the ``finetune``
flags from it, :mod:`nasa_lens.commands.flags`)."""
from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from nasa_lens.heads import Head, HeadSpecError, check_head_spec, format_heads
from nasa_lens.vocab import InputError, POSITIONS, check_format

__all__ = ["NASAConfig", "NASAConfigError"]

_HEAD_SPEC_RE = re.compile(r"^(top|bottom):\d+$|^random:\d+(:\d+)?$|^all$|^incremental$")


class NASAConfigError(InputError):
    """A NASA config value is invalid (the message names the field)."""


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
                raise NASAConfigError("heads must not be empty: give top:K, random:K, all, incremental or L.H,L.H")
            if not _HEAD_SPEC_RE.match(spec) or spec.partition(":")[0] in ("top", "bottom", "random"):
                try:
                    check_head_spec(spec, also=("all", "incremental"))
                except HeadSpecError as exc:
                    raise NASAConfigError(
                        f"heads {self.heads!r} is not a head spec: expected top:K, bottom:K, random:K[:SEED], all, "
                        f"incremental or a list L.H,L.H ({exc})"
                    ) from None
            self.heads = spec
        else:
            heads = [tuple(int(x) for x in h) for h in self.heads]
            if not heads:
                raise NASAConfigError("heads must name at least one head")
            self.heads = [(h[0], h[1]) for h in heads]
        if self.rank is not None and (isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1):
            raise NASAConfigError(f"rank must be a positive int or None (full rows), got {self.rank!r}")
        if self.key_rule not in ("complete", "any"):
            raise NASAConfigError(f"key_rule must be 'complete' or 'any', got {self.key_rule!r}")
        _positive("lr", self.lr, float)
        if self.weight_decay < 0:
            raise NASAConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise NASAConfigError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise NASAConfigError(f"max_grad_norm must be > 0 or None, got {self.max_grad_norm}")
        _positive("steps", self.steps, int)
        _positive("batch_size", self.batch_size, int)
        if self.batch_size < 2:
            raise NASAConfigError(f"batch_size must be >= 2 (a batch holds both labels), got {self.batch_size}")
        if self.lambda_nas < 0 or not math.isfinite(self.lambda_nas):
            raise NASAConfigError(f"lambda_nas must be a finite number >= 0, got {self.lambda_nas}")
        if self.nas_target not in ("neutral", "label"):
            raise NASAConfigError(f"nas_target must be 'neutral' or 'label', got {self.nas_target!r}")
        if self.nas_target_scale <= 0:
            raise NASAConfigError(f"nas_target_scale must be > 0, got {self.nas_target_scale}")
        if self.nas_positions not in POSITIONS:
            raise NASAConfigError(f"nas_positions must be 'after' or 'last', got {self.nas_positions!r}")
        if self.eval_every < 0:
            raise NASAConfigError(f"eval_every must be >= 0 (0: only before and after), got {self.eval_every}")
        if self.patience is not None and self.patience < 1:
            raise NASAConfigError(f"patience must be >= 1 or None, got {self.patience}")
        if self.early_stop_on not in ("val_loss", "abs_pr_gap"):
            raise NASAConfigError(f"early_stop_on must be 'val_loss' or 'abs_pr_gap', got {self.early_stop_on!r}")
        if self.checkpoint_every < 0:
            raise NASAConfigError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        _positive("scan_limit", self.scan_limit, int)
        check_format(self.format, NASAConfigError)
        _positive("incremental_start", self.incremental_start, int)
        _positive("incremental_max_rounds", self.incremental_max_rounds, int)
        if self.init_scale <= 0:
            raise NASAConfigError(f"init_scale must be > 0, got {self.init_scale}")
        if self.model_mode not in ("eval", "train"):
            raise NASAConfigError(f"model_mode must be 'eval' or 'train', got {self.model_mode!r}")
        _positive("eval_batch_size", self.eval_batch_size, int)
        if self.n_boot < 0:
            raise NASAConfigError(f"n_boot must be >= 0, got {self.n_boot}")

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
            raise NASAConfigError(f"unknown NASAConfig fields {sorted(unknown)}")
        return cls(**{k: (tuple(v) if k == "betas" else v) for k, v in d.items()})

    def training_identity(self) -> dict[str, Any]:
        """The fields a checkpoint must agree on to be resumed (everything that changes the trajectory)."""
        d = self.to_dict()
        for k in ("progress", "checkpoint_every", "eval_batch_size", "n_boot"):
            d.pop(k)
        return d


def _positive(name: str, value: Any, kind: type) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int) or not value > 0:
        raise NASAConfigError(f"{name} must be a positive {'number' if kind is float else 'int'}, got {value!r}")
