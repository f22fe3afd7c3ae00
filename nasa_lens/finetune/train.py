"""The NASA training loop for a fixed head set: the loss, validation with early stopping, checkpoints, and
the before / after validation results (the entry point, with head selection, is
:func:`nasa_lens.finetune.run.train_nasa`).

One step: a label-balanced batch (a pure function of ``seed`` and the step), the loss of
:func:`batch_loss` with the adapter's hooks attached, backward into the deltas only, gradient clipping,
AdamW. Every ``eval_every`` steps (and at the end) the validation split is scored; :class:`EarlyStopping`
keeps the best value of ``early_stop_on`` and stops after ``patience`` validations without improvement;
:class:`~nasa_lens.finetune.checkpoint.Checkpointer` writes resumable checkpoints. The bridge's train/eval
mode is restored and every hook removed afterwards, also after an exception.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from nasa_lens import parallel
from nasa_lens.adapters import HeadAdapter, model_shape, projection_module
from nasa_lens.evaluate import METRIC_KEYS, answer_logits, bias_metrics, predict, result_from_predictions
from nasa_lens.finetune.checkpoint import Checkpointer, LoopState
from nasa_lens.finetune.config import NASAConfig
from nasa_lens.finetune.data import BalancedBatches
from nasa_lens.finetune.result import TrainResult
from nasa_lens.finetune.selection import key_groups_for
from nasa_lens.heads import Head
from nasa_lens.nas import nas_hooks
from nasa_lens.prompts import PromptBatch, PromptFormat, build_batch
from nasa_lens.vocab import InputError

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel

__all__ = ["nas_targets", "batch_loss", "hooks_remaining", "EarlyStopping"]

logger = logging.getLogger("nasa_lens.finetune")

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
        raise InputError("every training example needs a gold label 'yes' or 'no'")
    hooks, store = [], {}
    if lambda_nas > 0:

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


# ---------------------------------------------------------------------------------------------- validation


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


class EarlyStopping:
    """The best validated value of ``cfg.early_stop_on`` (lower is better) and when to stop.

    An improvement must beat the best value by more than ``min_delta``; after ``patience`` validations
    without one (``None``: never) the run stops. The counters live in the :class:`LoopState`, so a
    checkpoint carries them and a resumed run stops where an uninterrupted one would.
    """

    def __init__(self, cfg: NASAConfig, state: LoopState) -> None:
        self.on, self.min_delta, self.patience = cfg.early_stop_on, cfg.min_delta, cfg.patience
        self.state = state

    def update(self, metrics: Mapping[str, float]) -> bool:
        """Record one validation at ``state.step``; True when it is the best so far (the caller keeps the deltas)."""
        s = self.state
        value = _stop_value(metrics, self.on)
        if value < s.best_value - self.min_delta:
            s.best_value, s.best_step, s.bad_evals = value, s.step, 0
            return True
        if s.step > 0:
            s.bad_evals += 1
            if self.patience is not None and s.bad_evals >= self.patience:
                s.stopped_early = True
                logger.info("early stop at step %d (best %s %.4f at step %d)", s.step, self.on, s.best_value, s.best_step)
        return False


class _Validator:
    """Scores the validation split with the attached adapter, appends the metrics to the history and feeds
    :class:`EarlyStopping` (keeping the best deltas and predictions)."""

    def __init__(self, model: LoadedModel, val: list[Any], fmt: PromptFormat, cfg: NASAConfig, state: LoopState, adapter: HeadAdapter) -> None:
        self.model, self.val, self.fmt, self.cfg, self.state, self.adapter = model, val, fmt, cfg, state, adapter
        self.stopping = EarlyStopping(cfg, state)

    def __call__(self) -> None:
        state = self.state
        m, p, d = _validate(self.model, self.val, self.fmt, self.cfg)
        state.last_preds = (p, d)
        for k in ("loss", *METRIC_KEYS):
            state.history.append({"step": state.step, "split": "val", "metric": k, "value": m[k]})
        state.last_gap = m["pr_gap"]
        if state.step == 0:
            state.before_preds = (p, d)
        if self.stopping.update(m):
            state.best_tensors = self.adapter.to_tensors()
            state.best_preds = (p, d)


# ---------------------------------------------------------------------------------------------- the loop


def _new_adapter(model: LoadedModel, heads: list[Head], key_groups: list[Head], cfg: NASAConfig, init: HeadAdapter | None) -> HeadAdapter:
    """Fresh deltas for ``heads`` (low-rank factors drawn from a generator seeded by ``cfg.seed``), with the
    deltas of heads that ``init`` (an earlier incremental round) already trained carried over."""
    generator = torch.Generator().manual_seed(cfg.seed)
    adapter = HeadAdapter(
        heads, key_groups, shape=model_shape(model), rank=cfg.rank, base_model=model.name,
        generator=generator, init_scale=cfg.init_scale,
    ).to(model.device)
    if init is not None:
        own = adapter.to_tensors()
        own.update({k: v for k, v in init.to_tensors().items() if k in own})
        adapter.load_tensors(own)
    return adapter


def _train_step(model: LoadedModel, adapter: HeadAdapter, opt: torch.optim.Optimizer, batch: PromptBatch,
                heads: list[Head], cfg: NASAConfig, step: int, weight: float = 1.0) -> dict[str, float]:
    """One optimizer step on ``batch``; returns the loss parts and the gradient norm (before clipping).

    Data-parallel (a process group of several ranks, :mod:`nasa_lens.parallel`): ``batch`` is this rank's
    slice of the global batch (``weight`` = its share of the rows); the loss is a mean over the batch, so
    backpropagating ``weight * loss`` and summing the gradients over ranks gives the global batch's gradient,
    and every rank takes the same optimizer step. The loss parts are summed the same way."""
    opt.zero_grad(set_to_none=True)
    loss, parts = batch_loss(
        model, batch, heads, lambda_nas=cfg.lambda_nas, nas_target=cfg.nas_target,
        nas_target_scale=cfg.nas_target_scale, nas_positions=cfg.nas_positions,
    )
    if not torch.isfinite(loss):
        raise FloatingPointError(f"NASA loss is {float(loss)} at step {step + 1}: lower lr ({cfg.lr})")
    split = parallel.world().parallel
    (loss * weight if split else loss).backward()
    params = list(adapter.parameters())
    if split:
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        parallel.all_reduce_sum_([p.grad for p in params])
        parts = parallel.weighted_sum(parts, weight)
    if cfg.max_grad_norm is not None:
        parts["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm))
    else:
        parts["grad_norm"] = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None])))
    opt.step()
    return parts


def train_heads(
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
    """Train the query (and key) row deltas of the fixed head set ``heads`` for ``cfg.steps`` steps.

    Validates on ``val`` before the first step, every ``cfg.eval_every`` steps and after the last (early
    stopping as :class:`EarlyStopping`); writes checkpoints into ``checkpoint_dir`` (resumed from there when
    ``resume``); ``init`` carries over an earlier round's deltas; ``callback(step, parts)`` runs after every
    step. Returns the :class:`TrainResult` with the best validated deltas (``cfg.restore_best``) and the
    validation results at step 0 and at the kept step.
    """
    key_groups, skipped = key_groups_for(model, heads, train_k=cfg.train_k, key_rule=cfg.key_rule)
    adapter = _new_adapter(model, heads, key_groups, cfg, init)
    opt = torch.optim.AdamW(adapter.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas)
    checkpoints = Checkpointer(checkpoint_dir, cfg, heads, key_groups)
    state, finished = LoopState(), False
    if resume:
        state, finished = checkpoints.resume(adapter, opt) or (state, finished)
    sampler = BalancedBatches([ex.label for ex in train], cfg.batch_size, cfg.seed)
    validate = _Validator(model, val, fmt, cfg, state, adapter)
    bridge = model.bridge
    was_training = bridge.training
    start = time.perf_counter() - state.seconds
    bar = tqdm(total=cfg.steps, initial=state.step, desc=f"NASA {tag}".strip(), disable=not parallel.shows_progress(cfg.progress), leave=False)
    try:
        bridge.train(cfg.model_mode == "train")
        with adapter.applied(model):
            if val and state.step == 0 and state.before_preds is None:
                validate()
            while not finished and state.step < cfg.steps and not state.stopped_early:
                rows, weight = parallel.split_batch(sampler.rows(state.step))  # one process: all rows, weight 1
                batch = build_batch(model, [train[i] for i in rows], fmt)
                parts = _train_step(model, adapter, opt, batch, heads, cfg, state.step, weight)
                state.step += 1
                for k, v in parts.items():
                    state.history.append({"step": state.step, "split": "train", "metric": k, "value": v})
                if val and ((cfg.eval_every and state.step % cfg.eval_every == 0) or state.step == cfg.steps):
                    validate()
                bar.update(1)
                bar.set_postfix(loss=f"{parts['loss']:.3f}", gap=f"{state.last_gap:.3f}")
                state.seconds = time.perf_counter() - start
                checkpoints.after_step(adapter, opt, state)
                if callback is not None:
                    callback(state.step, parts)
            state.seconds = time.perf_counter() - start
            checkpoints.save(adapter, opt, state, finished=True)
    finally:
        bar.close()
        bridge.train(was_training)
    return _finish(model, adapter, heads, key_groups, skipped, val, cfg, fmt, state)


def _finish(model: LoadedModel, adapter: HeadAdapter, heads: list[Head], key_groups: list[Head], skipped: list[Head],
            val: list[Any], cfg: NASAConfig, fmt: PromptFormat, state: LoopState) -> TrainResult:
    """Restore the best validated deltas (``cfg.restore_best``) and build the result with the validation
    results before training and at the kept step."""
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
        common = dict(n_boot=cfg.n_boot, seed=cfg.seed, model=model.name, dataset=name, format=fmt.label)
        before = result_from_predictions(ids, labels, *state.before_preds, **common)
        after = result_from_predictions(ids, labels, *kept_preds, **common)
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
