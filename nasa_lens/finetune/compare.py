"""Checks and baselines for NASA: general ability (language-model loss on neutral text, next-token
arithmetic), a decision threshold fitted on the training split (no training), and :func:`compare_methods`,
which trains NASA and the baselines with the same data and step budget and evaluates every method everywhere
(one tidy frame: ``method, dataset, metric, value, ci_low, ci_high, n_params, seconds``).

Each method is a small frozen object (:class:`BaseMethod`, :class:`ThresholdMethod`, :class:`NASAMethod`,
:class:`RandomHeadsMethod`, :class:`AllHeadsMethod`) with a ``name`` and ``run(ctx)``, registered by name in
:data:`COMPARISON_METHODS`; what they share (model, data, config, the base model's evaluations, the number of
heads NASA trains) is the :class:`ComparisonContext` of the call.

Two comparisons, two layers. :func:`compare_methods` is the NASA-vs-baselines comparison of
``docs/finetuning.md`` (trained methods with one data and step budget, NAS of the trained heads before/after,
general-ability checks; ``experiments/nasa_comparison.py``). :func:`nasa_lens.debias.compare_fixes` (the
``nasa-lens compare`` command, ``docs/debias.md``) compares the zero-training fixes (threshold, knockout, mask,
steer, with NASA wrapped as one more fix) through :class:`nasa_lens.debias.DebiasMethod` (fit / apply / save).
``debias`` sits above ``finetune`` (it wraps :func:`train_nasa`), so the method objects here are this
comparison's own and do not import the fixes; the two registries share names (``base``, ``threshold``,
``nasa``, ``random``) for the same ideas.
"""
from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch

from nasa_lens.evaluate import (
    METRIC_KEYS,
    EvalResult,
    bias_metrics,
    evaluate,
    predict,
    result_from_predictions,
)
from nasa_lens.heads import Head, format_head
from nasa_lens.io import atomic_path, read_json, write_json
from nasa_lens.nas import nas_for_batch
from nasa_lens.prompts import PromptFormat, iter_batches
from nasa_lens.vocab import InputError

from nasa_lens.finetune.config import NASAConfig
from nasa_lens.finetune.result import TrainResult
from nasa_lens.finetune.selection import select_heads
from nasa_lens.finetune.run import train_nasa

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel

logger = logging.getLogger("nasa_lens.finetune")

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

    layers = sorted({layer for layer, _ in heads})
    li = {layer: i for i, layer in enumerate(layers)}
    out = np.full(len(examples), np.nan)
    for idx, batch in iter_batches(model, list(examples), fmt, batch_size):
        nas = nas_for_batch(model, batch, positions=positions, layers=layers)  # [example, layer, head]
        sel = torch.stack([nas[:, li[layer], h] for layer, h in heads], dim=-1)
        out[idx] = sel.mean(-1).cpu().double().numpy()
    return out


# ---------------------------------------------------------------------------------------------- methods


class ComparisonError(InputError):
    """:func:`compare_methods` was given a method it does not know (or two different methods of one name)."""


@dataclass
class MethodRun:
    """What one method of a comparison produced: its rows of the tidy frame (see :class:`ComparisonResult`),
    its :class:`TrainResult` when it trains, its fitted decision threshold when it fits one."""

    rows: list[dict[str, Any]]
    train_result: TrainResult | None = None
    threshold: float | None = None


@dataclass
class ComparisonContext:
    """What every method of one :func:`compare_methods` call shares: the model, the data, the config, the
    options of the call, and two things computed once and reused: the base model's evaluations
    (:meth:`base_evaluation`, read by ``base`` and ``threshold``) and the number of heads NASA trains
    (:attr:`k_heads`, set by ``nasa``, read by ``random``)."""

    model: LoadedModel
    train: list[Any]
    val: Sequence[Any] | None
    eval_sets: Mapping[str, Sequence[Any]]
    config: NASAConfig
    fmt: PromptFormat
    nas_sets: list[str]
    nas_limit: int = 48
    general: bool = True
    n_boot: int = 1000
    random_seed: int = 0
    all_train_k: bool = True
    ranking: np.ndarray | None = None
    """The ``[layer, head]`` mean-NAS ranking of ``nasa``'s ``top:K`` (the one it scanned, once it ran)."""
    threshold_limit: int | None = 128
    progress: bool = True
    k_heads: int | None = None
    """How many heads ``nasa`` selected (None until it ran or :meth:`nasa_head_count` was asked)."""
    _base: tuple[dict[str, EvalResult], list[dict[str, Any]]] | None = field(default=None, repr=False)

    def evaluate_all(self, method: str, n_params: int, seconds: float) -> tuple[dict[str, EvalResult], list[dict[str, Any]]]:
        """Evaluate the model as it is now (adapters attached) on every eval set, then (``general``) the LM
        loss and the arithmetic accuracy: the results by set and the rows, labelled ``method``."""
        cfg, rows, evals = self.config, [], {}
        for name, ds in self.eval_sets.items():
            res = evaluate(self.model, ds, self.fmt, batch_size=cfg.eval_batch_size, n_boot=self.n_boot, seed=cfg.seed, progress=self.progress)
            evals[name] = res
            rows.extend(_rows_from_eval(method, name, res, n_params, seconds))
        if self.general:
            g = general_ability(self.model)
            rows.append(_mean_row(method, "neutral-text", "lm_loss", g["lm_loss"], n_params, seconds))
            rows.append(_mean_row(method, "arith-next-token", "arith_accuracy", g["arith_accuracy"], n_params, seconds))
        return evals, rows

    def base_evaluation(self) -> tuple[dict[str, EvalResult], list[dict[str, Any]]]:
        """The base model evaluated everywhere (rows labelled ``base``), computed on first use only."""
        if self._base is None:
            self._base = self.evaluate_all("base", 0, 0.0)
        return self._base

    def nasa_head_count(self) -> int:
        """The number of heads ``nasa`` trains: what it selected if it ran, else what its ``heads`` spec
        selects on the training examples (``top:1`` for ``incremental``, which starts from one head)."""
        if self.k_heads is None:
            cfg = self.config
            spec = cfg.heads if cfg.heads != "incremental" else "top:1"
            self.k_heads = len(select_heads(self.model, spec, self.train, fmt=self.fmt, ranking=self.ranking, scan_limit=cfg.scan_limit)[0])
        return self.k_heads

    def nas_of_heads(self, name: str, heads: Sequence[Head]) -> np.ndarray:
        """Per example of the first ``nas_limit`` of eval set ``name``, the mean NAS over ``heads``."""
        cfg = self.config
        return _nas_of_heads(self.model, list(self.eval_sets[name])[: self.nas_limit], heads, self.fmt, cfg.nas_positions, cfg.eval_batch_size)


@runtime_checkable
class ComparisonMethod(Protocol):
    """One row group of the comparison: a ``name`` (its label in the table) and :meth:`run`."""

    name: str

    def run(self, ctx: ComparisonContext) -> MethodRun:
        """Do the method (fit/train, with the model restored afterwards) and return its rows."""
        ...  # pragma: no cover


@dataclass(frozen=True)
class BaseMethod:
    """The model unchanged: the shared base evaluation (:meth:`ComparisonContext.base_evaluation`)."""

    name: str = "base"

    def run(self, ctx: ComparisonContext) -> MethodRun:
        _, rows = ctx.base_evaluation()
        return MethodRun([{**r, "method": self.name} for r in rows])


@dataclass(frozen=True)
class ThresholdMethod:
    """No training: the decision threshold on ``p_yes`` fitted (:func:`fit_threshold`) on the first
    ``threshold_limit`` training examples, applied to the base predictions (re-scored, not re-run); the
    general-ability rows are the base model's (a threshold does not change the model). One parameter."""

    name: str = "threshold"

    def run(self, ctx: ComparisonContext) -> MethodRun:
        cfg = ctx.config
        base_evals, base_rows = ctx.base_evaluation()
        t0 = time.perf_counter()
        fit_rows = ctx.train[: ctx.threshold_limit] if ctx.threshold_limit else ctx.train
        p, _ = predict(ctx.model, fit_rows, ctx.fmt, batch_size=cfg.eval_batch_size, progress=ctx.progress, desc="threshold fit")
        y = np.array([1 if ex.label == "yes" else 0 for ex in fit_rows])
        t = fit_threshold(y, p)
        seconds = time.perf_counter() - t0
        rows: list[dict[str, Any]] = []
        for name, res in base_evals.items():
            r2 = result_from_predictions(res.ids, res.labels, res.p_yes, res.logit_diff, threshold=t, n_boot=ctx.n_boot,
                                         seed=cfg.seed, model=res.model, dataset=res.dataset, format=res.format)
            rows.extend(_rows_from_eval(self.name, name, r2, 1, seconds))
        rows.extend({**r, "method": self.name, "n_params": 1, "seconds": seconds}
                    for r in base_rows if r["dataset"] in ("neutral-text", "arith-next-token"))
        return MethodRun(rows, threshold=t)


@dataclass(frozen=True)
class _TrainedMethod:
    """A head-restricted fine-tune (:func:`train_nasa`) with the comparison's data and config, evaluated with
    its adapter attached, plus the NAS of its heads before/after on every ``nas_sets`` eval set."""

    name: str

    def config_for(self, ctx: ComparisonContext) -> NASAConfig:
        raise NotImplementedError  # pragma: no cover

    def ranking_for(self, ctx: ComparisonContext) -> np.ndarray | None:
        return None

    def trained(self, ctx: ComparisonContext, res: TrainResult) -> None:
        """Called right after training (``nasa`` records its heads for ``random``)."""

    def run(self, ctx: ComparisonContext) -> MethodRun:
        mcfg = self.config_for(ctx)
        logger.info("compare: training %s (%s)", self.name, mcfg.heads)
        res = train_nasa(ctx.model, ctx.train, ctx.val, mcfg, ranking=self.ranking_for(ctx))
        self.trained(ctx, res)
        nas_before = {name: ctx.nas_of_heads(name, res.heads) for name in ctx.nas_sets}
        with res.adapter.applied(ctx.model):
            _, rows = ctx.evaluate_all(self.name, res.n_params, res.seconds)
            for name in ctx.nas_sets:
                after = ctx.nas_of_heads(name, res.heads)
                rows.append(_mean_row(self.name, name, "nas_heads_before", nas_before[name], res.n_params, res.seconds))
                rows.append(_mean_row(self.name, name, "nas_heads_after", after, res.n_params, res.seconds))
        return MethodRun(rows, train_result=res)


@dataclass(frozen=True)
class NASAMethod(_TrainedMethod):
    """NASA itself: the comparison's config as given (``ranking`` for its ``top:K``, else scanned on train)."""

    name: str = "nasa"

    def config_for(self, ctx: ComparisonContext) -> NASAConfig:
        return ctx.config

    def ranking_for(self, ctx: ComparisonContext) -> np.ndarray | None:
        return ctx.ranking

    def trained(self, ctx: ComparisonContext, res: TrainResult) -> None:
        ctx.k_heads = len(res.heads)
        ctx.ranking = res.ranking if ctx.ranking is None else ctx.ranking


@dataclass(frozen=True)
class RandomHeadsMethod(_TrainedMethod):
    """The control: as many random heads as NASA trains (:meth:`ComparisonContext.nasa_head_count`),
    ``random:K:SEED`` with ``seed`` (None: the call's ``random_seed``), same config otherwise."""

    name: str = "random"
    seed: int | None = None

    def config_for(self, ctx: ComparisonContext) -> NASAConfig:
        k = ctx.nasa_head_count()
        return ctx.config.replace(heads=f"random:{k}:{ctx.random_seed if self.seed is None else self.seed}")


@dataclass(frozen=True)
class AllHeadsMethod(_TrainedMethod):
    """Every head's query rows (and key rows when ``train_k``; None: the call's ``all_train_k``; either way
    also when the config trains them), same config otherwise."""

    name: str = "all"
    train_k: bool | None = None

    def config_for(self, ctx: ComparisonContext) -> NASAConfig:
        train_k = ctx.all_train_k if self.train_k is None else self.train_k
        return ctx.config.replace(heads="all", train_k=train_k or ctx.config.train_k)


COMPARISON_METHODS: dict[str, ComparisonMethod] = {
    m.name: m for m in (BaseMethod(), ThresholdMethod(), NASAMethod(), RandomHeadsMethod(), AllHeadsMethod())
}
"""The methods of :func:`compare_methods` by name, in table (and run) order."""


def resolve_methods(methods: Sequence[str | ComparisonMethod]) -> list[ComparisonMethod]:
    """Names looked up in :data:`COMPARISON_METHODS`, objects kept; run order: the registered names in the
    registry's order (so ``nasa`` runs before ``random``, which takes its head count), then any other names
    in the order given. A name given twice runs once; two different methods of one name, an unknown name or
    an object that is not a method raise :class:`ComparisonError`."""
    if isinstance(methods, str):
        methods = [methods]
    unknown = [m for m in methods if isinstance(m, str) and m not in COMPARISON_METHODS]
    if unknown:
        raise ComparisonError(f"unknown method(s) {', '.join(map(repr, unknown))}; known: {', '.join(COMPARISON_METHODS)}")
    by_name: dict[str, ComparisonMethod] = {}
    for m in methods:
        obj = COMPARISON_METHODS[m] if isinstance(m, str) else m
        if not isinstance(obj, ComparisonMethod):
            raise ComparisonError(f"not a comparison method: {obj!r} (give a name of {', '.join(COMPARISON_METHODS)} or an object with name and run)")
        if obj.name in by_name and by_name[obj.name] != obj:
            raise ComparisonError(f"two different methods named {obj.name!r}: {by_name[obj.name]!r} and {obj!r}")
        by_name.setdefault(obj.name, obj)
    rank = {name: i for i, name in enumerate(COMPARISON_METHODS)}
    return sorted(by_name.values(), key=lambda m: rank.get(m.name, len(rank)))


# ---------------------------------------------------------------------------------------------- compare_methods


def compare_methods(
    model: LoadedModel,
    train: Sequence[Any],
    eval_sets: Mapping[str, Sequence[Any]],
    config: NASAConfig | None = None,
    *,
    val: Sequence[Any] | None = None,
    methods: Sequence[str | ComparisonMethod] = tuple(COMPARISON_METHODS),
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
        methods: names of :data:`COMPARISON_METHODS` (``base``, ``threshold``, ``nasa``, ``random``, ``all``)
            or method objects (:class:`ComparisonMethod`, e.g. ``RandomHeadsMethod(name="random-1", seed=1)``);
            run and tabled in the order of :func:`resolve_methods`.
        nas_sets: eval sets on which the NAS of each method's heads is measured before/after (default:
            all), on the first ``nas_limit`` examples.
        general: also measure the LM loss on :data:`NEUTRAL_TEXT` and the arithmetic accuracy.
        n_boot: bootstrap resamples for the metric intervals.
        ranking: a ``[layer, head]`` mean-NAS array for ``nasa``'s ``top:K`` (else scanned on ``train``).
        threshold_limit: the ``threshold`` baseline is fitted on the first N training examples (None: all).
    """
    cfg = config or NASAConfig()
    run_order = resolve_methods(methods)
    train = list(train)
    ctx = ComparisonContext(
        model=model, train=train, val=val, eval_sets=eval_sets, config=cfg, fmt=PromptFormat.named(cfg.format),
        nas_sets=list(eval_sets) if nas_sets is None else list(nas_sets), nas_limit=nas_limit, general=general,
        n_boot=n_boot, random_seed=random_seed, all_train_k=all_train_k, ranking=ranking,
        threshold_limit=threshold_limit, progress=progress,
    )
    rows: list[dict[str, Any]] = []
    results: dict[str, TrainResult] = {}
    thresholds: dict[str, float] = {}
    for method in run_order:
        out = method.run(ctx)
        rows.extend(out.rows)
        if out.train_result is not None:
            results[method.name] = out.train_result
        if out.threshold is not None:
            thresholds[method.name] = out.threshold
    frame = pd.DataFrame(rows, columns=["method", "dataset", "metric", "value", "ci_low", "ci_high", "n_params", "seconds"])
    meta = {
        "model": model.name,
        "methods": [m.name for m in run_order],
        "config": cfg.to_dict(),
        "n_train": len(train),
        "n_val": len(val or []),
        "eval_sets": {k: len(v) for k, v in eval_sets.items()},
        "heads": {m: [format_head(h) for h in r.heads] for m, r in results.items()},
        "key_groups": {m: [format_head(g) for g in r.key_groups] for m, r in results.items()},
    }
    return ComparisonResult(frame=frame, train_results=results, thresholds=thresholds, meta=meta)
