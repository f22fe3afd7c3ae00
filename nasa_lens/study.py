"""The main job: ``nasa-lens study``. Bias report -> NAS scan -> instruction-agnostic checks -> ablation
against controls -> NASA fine-tune -> after-report and generalisation -> report, for one or more models.

Every stage is cached and resumable (:mod:`nasa_lens.stages`): its output folder under ``OUT/stages/`` is keyed
by the config it reads, the keys of its upstream stages and the package version, so a second run reuses
every finished stage, a config change re-runs exactly the stages downstream of it, and an interrupted run
resumes at the first unfinished stage (the fine-tune from its last checkpoint).

Stages, per model ``M`` (``STAGE_ORDER``)::

    bias@M        metrics with bootstrap intervals on the test split of every dataset     (data, bias)
    nas@M         NAS of every head on the train split                                    (data, nas)
    conditions@M  the NAS ranking under other prompt formats / datasets, correlations     (conditions; nas@M)
    ablation@M    yes-rate when the top-k NAS heads are ablated, vs random / bottom heads  (ablation; nas@M)
    finetune@M    NASA fine-tune of the flagged heads, checkpointed                       (finetune; nas@M)
    after@M       the bias report again with the adapter, paired deltas                   (bias; finetune@M, bias@M)
    report        side-by-side figures, CSVs and results.json                             (report; everything)

Then, always (cheap, no model): ``OUT/report.md``, ``OUT/results.json``, ``OUT/*.csv``, ``OUT/timings.json``
and the figures copied to ``figures_dir`` (HTML, and PNG when a Chromium exists).

    >>> from nasa_lens.config import StudyConfig
    >>> from nasa_lens.study import run_study
    >>> result = run_study(StudyConfig.quick(), "results/quick")     # doctest: +SKIP
    >>> print(result.summary())                                      # doctest: +SKIP
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nasa_lens.config import StudyConfig
from nasa_lens.io import atomic_path, read_json, write_json, write_text
from nasa_lens.stages import StageContext, StageOutput, StageStore, safe_name

__all__ = [
    "STAGE_ORDER",
    "STAGE_FUNCTIONS",
    "STAGES_DIR",
    "StudyEnv",
    "StudyResult",
    "run_study",
    "PlannedStage",
    "plan_stages",
    "paired_deltas",
    "ablation_summary",
    "nasa_config",
    "bias_frame",
    "build_report",
    "report_markdown",
]

logger = logging.getLogger(__name__)

STAGE_ORDER: tuple[str, ...] = ("bias", "nas", "conditions", "ablation", "finetune", "after", "report")
STAGES_DIR = "stages"
RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
TIMINGS_FILE = "timings.json"
DELTA_METRICS = ("accuracy", "precision", "recall", "f1", "pr_gap", "yes_rate", "mean_logit_diff")


def _version() -> str:
    """The package version (part of every stage key)."""
    try:
        from nasa_lens import __version__

        return __version__
    except ImportError:  # a broken editable install can import the package as a bare namespace
        from importlib.metadata import version

        return version("nasa-lens")


# ============================================================================================ environment


class StudyEnv:
    """What stage functions share: the config, loaded models (loaded lazily, once) and loaded datasets."""

    def __init__(self, cfg: StudyConfig, *, progress: bool = True) -> None:
        self.cfg = cfg
        self.progress = progress
        self._models: dict[str, Any] = {}
        self._data: dict[str, Any] = {}

    @property
    def format(self):
        from nasa_lens.prompts import PromptFormat

        return PromptFormat.named(self.cfg.data.format)

    def model(self, name: str) -> Any:
        if name not in self._models:
            from nasa_lens.models import load_model

            logger.info("loading model %s", name)
            self._models[name] = load_model(name, device=self.cfg.device)
        return self._models[name]

    def drop_model(self, name: str) -> None:
        """Forget a loaded model (the next :meth:`model` call loads it afresh, e.g. after a fine-tune)."""
        self._models.pop(name, None)

    def dataset(self, name: str, split: str, limit: int) -> Any:
        spec = self.cfg.data.spec(name, split, limit, self.cfg.seed)
        key = json.dumps(spec, sort_keys=True)
        if key not in self._data:
            from nasa_lens.datasets import load_dataset

            self._data[key] = load_dataset(
                name, limit=limit, seed=self.cfg.seed, split=split, test_fraction=self.cfg.data.test_fraction,
                **spec["options"],
            )
        return self._data[key]

    # sample sizes
    @property
    def n_nas(self) -> int:
        d = self.cfg.data
        return min(self.cfg.nas.limit or d.train_limit, d.train_limit)

    @property
    def n_ablation(self) -> int:
        d = self.cfg.data
        return min(self.cfg.ablation.limit or d.test_limit, d.test_limit)


# ============================================================================================ stage plan


@dataclass(frozen=True)
class PlannedStage:
    """One stage of the plan: its name, kind, model, the inputs hashed into its key and its upstream names."""

    name: str
    kind: str
    model: str | None
    inputs: dict[str, Any]
    upstream: tuple[str, ...]


def _stage_name(kind: str, model: str | None) -> str:
    return kind if model is None else f"{kind}@{model}"


def plan_stages(cfg: StudyConfig) -> list[PlannedStage]:
    """The stages of a study in run order, each with the exact config it reads (see the module docstring)."""
    d = cfg.data
    env = StudyEnv(cfg)
    common = {"seed": cfg.seed, "batch_size": cfg.batch_size, "device": cfg.device, "format": d.format}
    test_specs = [d.spec(ds, "test", d.test_limit, cfg.seed) for ds in d.eval_datasets]
    nasa_options = None
    if cfg.finetuned_models():  # resolved and validated now, before any stage runs
        nasa_options = {k: v for k, v in nasa_config(cfg).to_dict().items() if k != "progress"}
    plan: list[PlannedStage] = []
    for m in cfg.models:
        name = lambda kind: _stage_name(kind, m)  # noqa: E731
        plan.append(PlannedStage(name("bias"), "bias", m, {"model": m, **common, "data": test_specs, "bias": cfg.section("bias")}, ()))
        plan.append(
            PlannedStage(
                name("nas"), "nas", m,
                {"model": m, **common, "data": d.spec(d.dataset, "train", env.n_nas, cfg.seed), "nas": cfg.section("nas")}, (),
            )
        )
        c = cfg.conditions
        plan.append(
            PlannedStage(
                name("conditions"), "conditions", m,
                {
                    "model": m, **common, "conditions": cfg.section("conditions"), "positions": cfg.nas.positions,
                    "data": [d.spec(ds, "train", c.limit, cfg.seed) for ds in [d.dataset, *c.datasets]],
                },
                (name("nas"),),
            )
        )
        plan.append(
            PlannedStage(
                name("ablation"), "ablation", m,
                {"model": m, **common, "ablation": cfg.section("ablation"), "threshold": cfg.bias.threshold,
                 "n_boot": cfg.bias.n_boot, "data": d.spec(d.dataset, "test", env.n_ablation, cfg.seed)},
                (name("nas"),),
            )
        )
        if m in cfg.finetuned_models():
            plan.append(
                PlannedStage(
                    name("finetune"), "finetune", m,
                    {"model": m, **common, "val_fraction": cfg.finetune.val_fraction, "nasa": nasa_options,
                     "data": d.spec(d.dataset, "train", d.train_limit, cfg.seed)},
                    (name("nas"),),
                )
            )
            plan.append(
                PlannedStage(
                    name("after"), "after", m,
                    {"model": m, **common, "data": test_specs, "bias": cfg.section("bias")},
                    (name("finetune"), name("bias")),
                )
            )
    plan.append(
        PlannedStage("report", "report", None, {"report": cfg.section("report"), "models": list(cfg.models)},
                     tuple(p.name for p in plan))
    )
    return plan


# ============================================================================================ stages


def _metrics_summary(res: Any) -> dict[str, Any]:
    return {**{k: res.metrics[k] for k in res.metrics}, "ci": {k: list(v) for k, v in res.ci.items()}, "n": res.n}


def stage_bias(env: StudyEnv, model_name: str, ctx: StageContext) -> dict[str, Any]:
    """Bias metrics (with bootstrap intervals) on the test split of the main and generalisation datasets."""
    from nasa_lens.evaluate import evaluate

    cfg = env.cfg
    model = env.model(model_name)
    out: dict[str, Any] = {}
    for ds_name in cfg.data.eval_datasets:
        data = env.dataset(ds_name, "test", cfg.data.test_limit)
        res = evaluate(model, data, env.format, batch_size=cfg.batch_size, threshold=cfg.bias.threshold,
                       n_boot=cfg.bias.n_boot, seed=cfg.seed, progress=env.progress)
        res.save(ctx.work / "eval" / safe_name(ds_name))
        out[ds_name] = _metrics_summary(res)
    return {"datasets": out}


def stage_nas(env: StudyEnv, model_name: str, ctx: StageContext) -> dict[str, Any]:
    """NAS of every head on the train split (per-example scores, ranking)."""
    from nasa_lens.nas import RANKING_FILE, scan_nas

    cfg = env.cfg
    model = env.model(model_name)
    data = env.dataset(cfg.data.dataset, "train", env.n_nas)
    result = scan_nas(model, data, env.format, positions=cfg.nas.positions, batch_size=cfg.batch_size, progress=env.progress)
    result.save(ctx.work / "nas")
    with atomic_path(ctx.work / "nas" / RANKING_FILE) as tmp:
        result.ranking_frame().to_csv(tmp, index=False)
    return _nas_summary(result, cfg.nas.top_k)


def _nas_summary(result: Any, k: int) -> dict[str, Any]:
    from nasa_lens.heads import format_head

    k = min(k, result.n_layers * result.n_heads)
    mean, se = result.mean, result.stderr
    return {
        "n": result.n,
        "shape": [result.n_layers, result.n_heads],
        "positions": result.positions,
        "format": result.format,
        "dataset": result.dataset,
        "top_heads": [
            {"head": format_head(h), "nas_mean": float(mean[h]), "nas_stderr": float(se[h])} for h in result.top_heads(k)
        ],
        "share_positive": float(np.mean(mean > 0)),
        "max_mean": float(np.nanmax(mean)),
    }


def _load_nas(stage: StageOutput) -> Any:
    from nasa_lens.nas import NASResult

    return NASResult.load(stage.path / "nas")


def stage_conditions(env: StudyEnv, model_name: str, ctx: StageContext) -> dict[str, Any]:
    """The NAS ranking under each prompt format and on further datasets, and how well they agree."""
    from nasa_lens.nas import condition_correlations, scan_nas
    from nasa_lens.prompts import PromptFormat

    cfg = env.cfg
    c = cfg.conditions
    model = env.model(model_name)
    main = _load_nas(ctx.upstream[_stage_name("nas", model_name)])
    main_label = f"{PromptFormat.named(cfg.data.format).label} ({cfg.data.dataset})"
    results: dict[str, Any] = {}
    data = env.dataset(cfg.data.dataset, "train", c.limit)
    for fmt_name in c.formats:
        fmt = PromptFormat.named(fmt_name)
        label = f"{fmt.label} ({cfg.data.dataset})"
        if fmt_name == cfg.data.format:
            results[main_label] = main
            continue
        results[label] = scan_nas(model, data, fmt, positions=cfg.nas.positions, batch_size=cfg.batch_size, progress=env.progress)
    for ds_name in c.datasets:
        other = env.dataset(ds_name, "train", c.limit)
        label = f"{env.format.label} ({ds_name})"
        results[label] = scan_nas(model, other, env.format, positions=cfg.nas.positions, batch_size=cfg.batch_size, progress=env.progress)
    if main_label not in results:
        results = {main_label: main, **results}
    k = min(c.top_k, main.n_layers * main.n_heads)
    corr = condition_correlations(results, k=k)
    for i, (label, res) in enumerate(results.items()):
        res.save(ctx.work / "conditions" / f"{i:02d}")
    write_json(ctx.work / "conditions" / "labels.json", list(results))
    with atomic_path(ctx.work / "correlations.csv") as tmp:
        corr.to_csv(tmp, index=False)
    vs_main = corr[corr["a"] == main_label]
    return {
        "conditions": list(results),
        "main": main_label,
        "k": k,
        "correlations": corr.to_dict(orient="records"),
        "vs_main": {
            "spearman_mean": float(vs_main["spearman_r"].mean()) if len(vs_main) else float("nan"),
            "spearman_min": float(vs_main["spearman_r"].min()) if len(vs_main) else float("nan"),
            "top_k_overlap_mean": float(vs_main["top_k_overlap"].mean()) if len(vs_main) else float("nan"),
        },
        "top_heads": {label: [f"{h[0]}.{h[1]}" for h in res.top_heads(k)] for label, res in results.items()},
    }


def _load_conditions(stage: StageOutput) -> dict[str, Any]:
    from nasa_lens.nas import NASResult

    labels = read_json(stage.path / "conditions" / "labels.json")
    return {label: NASResult.load(stage.path / "conditions" / f"{i:02d}") for i, label in enumerate(labels)}


def stage_ablation(env: StudyEnv, model_name: str, ctx: StageContext) -> dict[str, Any]:
    """Ablate the top-k NAS heads, the bottom-k heads and random head sets on the test split
    (:func:`nasa_lens.causal.ablation_curve`: paired bootstrap intervals, permutation p-values vs random)."""
    from nasa_lens import causal

    cfg = env.cfg
    a = cfg.ablation
    model = env.model(model_name)
    nas = _load_nas(ctx.upstream[_stage_name("nas", model_name)])
    data = env.dataset(cfg.data.dataset, "test", env.n_ablation)
    result = causal.ablation_curve(
        model, data, nas.mean, ks=list(a.ks), mode=a.mode, n_random_seeds=a.n_random, fmt=env.format, progress=env.progress,
        seed=cfg.seed, batch_size=cfg.batch_size, threshold=cfg.bias.threshold, n_boot=cfg.bias.n_boot, n_perm=a.n_perm,
    )
    result.save(ctx.work / CURVE_DIR)
    _write_csv(ctx.work / ABLATION_FILE, result.to_wide())
    return ablation_summary(result.to_dataframe())


def ablation_summary(table: pd.DataFrame) -> dict[str, Any]:
    """The study's view of an ablation-curve table (:meth:`AblationCurveResult.to_dataframe`): the clean
    yes-rate, and per k the yes-rate / accuracy / change in the mean logit difference with the top-k, the
    bottom-k and the random heads ablated, the paired 95% CI of each yes-rate change and the permutation
    p-value of top-k (and bottom-k) against random."""

    def pick(k: int, cond: str, metric: str, col: str = "value") -> float:
        r = table[(table["k"] == k) & (table["condition"] == cond) & (table["metric"] == metric)]
        return float(r[col].iloc[0]) if len(r) else float("nan")

    def draws(k: int, metric: str) -> list[float]:
        r = table[(table["k"] == k) & (table["condition"] == "random") & (table["metric"] == metric)]
        return [float(v) for v in r["value"]]

    rows = []
    for k in sorted(int(k) for k in table.loc[table["k"] > 0, "k"].unique()):
        rand = draws(k, "yes_rate")
        heads = table[(table["k"] == k) & (table["condition"] == "top")]["heads"]
        row: dict[str, Any] = {"k": k, "heads_top": str(heads.iloc[0]) if len(heads) else ""}
        for cond, tag in (("top", "top"), ("random_mean", "random_mean"), ("bottom", "bottom")):
            row[f"yes_rate_{tag}"] = pick(k, cond, "yes_rate")
            row[f"yes_rate_{tag}_delta"] = pick(k, cond, "yes_rate", "delta")
            row[f"yes_rate_{tag}_delta_ci"] = [pick(k, cond, "yes_rate", "delta_ci_low"), pick(k, cond, "yes_rate", "delta_ci_high")]
            row[f"accuracy_{tag}"] = pick(k, cond, "accuracy")
            row[f"logit_diff_{tag}_delta"] = pick(k, cond, "mean_logit_diff", "delta")
        row["yes_rate_random_sd"] = float(np.std(rand, ddof=1)) if len(rand) > 1 else float("nan")
        row["yes_rate_random_draws"] = rand
        row["p_top_vs_random"] = pick(k, "top", "yes_rate", "p_value")
        row["p_bottom_vs_random"] = pick(k, "bottom", "yes_rate", "p_value")
        row["p_logit_diff_top_vs_random"] = pick(k, "top", "mean_logit_diff", "p_value")
        rows.append(row)
    return {
        "baseline_yes_rate": pick(0, "clean", "yes_rate"),
        "baseline_accuracy": pick(0, "clean", "accuracy"),
        "baseline_logit_diff": pick(0, "clean", "mean_logit_diff"),
        "n": int(table["n"].iloc[0]) if len(table) else 0,
        "by_k": rows,
    }


NASA_RESERVED = {"heads": "finetune.heads", "format": "data.format", "seed": "seed", "progress": "--no-progress"}
"""NASA options the study sets itself (and the config key to use instead)."""

STUDY_NASA_DEFAULTS: dict[str, Any] = {"steps": 40, "batch_size": 4, "eval_every": 10, "checkpoint_every": 5}
"""NASA options the study sets unless ``finetune.nasa`` does (checkpoints often enough to resume)."""


def nasa_config(cfg: StudyConfig, *, progress: bool = False) -> Any:
    """The :class:`nasa_lens.nasa.NASAConfig` of the fine-tune stage (raises ConfigError on a bad option)."""
    from nasa_lens.config import ConfigError
    from nasa_lens.nasa import NASAConfig

    for key, instead in NASA_RESERVED.items():
        if key in cfg.finetune.nasa:
            raise ConfigError(f"finetune.nasa.{key}: set by the study; use {instead} instead")
    options = {
        **STUDY_NASA_DEFAULTS,
        "nas_positions": cfg.nas.positions,
        **cfg.finetune.nasa,
        "heads": cfg.finetune.heads,
        "format": cfg.data.format,
        "seed": cfg.seed,
        "progress": progress,
    }
    try:
        return NASAConfig.from_dict(options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"finetune.nasa / finetune.heads: {exc}") from None


def stage_finetune(env: StudyEnv, model_name: str, ctx: StageContext) -> dict[str, Any]:
    """NASA fine-tune of the flagged heads on the train split (a validation share held out for early
    stopping); resumes from the checkpoint in ``ctx.checkpoint_dir`` after an interruption."""
    from nasa_lens import nasa

    cfg = env.cfg
    model = env.model(model_name)
    nas = _load_nas(ctx.upstream[_stage_name("nas", model_name)])
    data = env.dataset(cfg.data.dataset, "train", cfg.data.train_limit)
    train, val = nasa.holdout_split(list(data), cfg.finetune.val_fraction, seed=cfg.seed)
    ncfg = nasa_config(cfg, progress=env.progress)
    result = nasa.train_nasa(model, train, val, ncfg, ranking=nas.mean, checkpoint_dir=ctx.checkpoint_dir, resume=True)
    result.save(ctx.work / "adapter", model)
    long = result.to_dataframe()
    wide = (long.assign(name=long["split"] + "_" + long["metric"]).pivot_table(index="step", columns="name", values="value")
            .reset_index() if len(long) else pd.DataFrame({"step": []}))
    _write_csv(ctx.work / HISTORY_FILE, wide)

    def val_metrics(r: Any) -> dict[str, Any] | None:
        return None if r is None else {k: r.metrics[k] for k in ("accuracy", "recall", "precision", "pr_gap", "yes_rate")}

    train_loss = long[(long["split"] == "train") & (long["metric"] == "loss")]["value"].to_numpy()
    return {
        "heads": ",".join(f"{h[0]}.{h[1]}" for h in result.heads),
        "n_params": int(result.n_params),
        "n_train": len(train),
        "n_val": len(val),
        "steps_done": int(result.steps_done),
        "best_step": int(result.best_step),
        "stopped_early": bool(result.stopped_early),
        "train_loss_first": float(train_loss[0]) if len(train_loss) else float("nan"),
        "train_loss_last": float(train_loss[-1]) if len(train_loss) else float("nan"),
        "val_before": val_metrics(result.before),
        "val_after": val_metrics(result.after),
        "nasa": {k: v for k, v in ncfg.to_dict().items() if k != "progress"},
    }


def stage_after(env: StudyEnv, model_name: str, ctx: StageContext) -> dict[str, Any]:
    """The bias report with the NASA adapter applied, with paired before/after deltas per dataset."""
    from nasa_lens.adapters import load_adapter
    from nasa_lens.evaluate import EvalResult, evaluate

    cfg = env.cfg
    model = env.model(model_name)
    ft = ctx.upstream[_stage_name("finetune", model_name)]
    before_stage = ctx.upstream[_stage_name("bias", model_name)]
    adapter = load_adapter(model, ft.path / "adapter")  # attached as hooks until removed below
    out: dict[str, Any] = {}
    try:
        for ds_name in cfg.data.eval_datasets:
            data = env.dataset(ds_name, "test", cfg.data.test_limit)
            res = evaluate(model, data, env.format, batch_size=cfg.batch_size, threshold=cfg.bias.threshold,
                           n_boot=cfg.bias.n_boot, seed=cfg.seed, progress=env.progress)
            res.save(ctx.work / "eval" / safe_name(ds_name))
            before = EvalResult.load(before_stage.path / "eval" / safe_name(ds_name))
            out[ds_name] = {
                "after": _metrics_summary(res),
                "delta": paired_deltas(before, res, n_boot=cfg.bias.n_boot, seed=cfg.seed),
            }
    finally:
        adapter.remove()
    return {"datasets": out}


def paired_deltas(before: Any, after: Any, *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict[str, Any]:
    """``after - before`` for each metric of :data:`DELTA_METRICS` with a paired percentile-bootstrap interval
    (the same resampled examples for both), and an exact McNemar p-value on the per-example correctness."""
    from scipy import stats

    from nasa_lens.evaluate import bias_metrics

    if list(before.ids) != list(after.ids):
        raise ValueError("paired_deltas needs the same examples in the same order before and after")
    y = np.asarray(before.labels, int)
    pb, pa = np.asarray(before.p_yes, float), np.asarray(after.p_yes, float)
    db, da = np.asarray(before.logit_diff, float), np.asarray(after.logit_diff, float)
    thr = float(before.threshold)
    point = {k: after.metrics[k] - before.metrics[k] for k in DELTA_METRICS}
    rng = np.random.default_rng(seed)
    n = len(y)
    draws: dict[str, list[float]] = {k: [] for k in DELTA_METRICS}
    for _ in range(n_boot if n else 0):
        i = rng.integers(0, n, n)
        mb = bias_metrics(y[i], pb[i], thr, db[i])
        ma = bias_metrics(y[i], pa[i], thr, da[i])
        for k in DELTA_METRICS:
            draws[k].append(ma[k] - mb[k])
    out: dict[str, Any] = {}
    for k in DELTA_METRICS:
        v = np.asarray(draws[k], float)
        v = v[np.isfinite(v)]
        lo, hi = (float(np.quantile(v, alpha / 2)), float(np.quantile(v, 1 - alpha / 2))) if len(v) else (math.nan, math.nan)
        out[k] = {"delta": float(point[k]), "ci": [lo, hi]}
    correct_b = (pb > thr).astype(int) == y
    correct_a = (pa > thr).astype(int) == y
    fixed, broken = int((~correct_b & correct_a).sum()), int((correct_b & ~correct_a).sum())
    p = float(stats.binomtest(fixed, fixed + broken, 0.5).pvalue) if fixed + broken else 1.0
    out["mcnemar"] = {"fixed": fixed, "broken": broken, "p_value": p}
    return out


def stage_report(env: StudyEnv, model_name: None, ctx: StageContext) -> dict[str, Any]:
    """Figures (per model and side by side), CSVs and the results dictionary, from the finished stages.

    Returns what ``results.json`` holds: the config, and per model the summary of every stage."""
    return build_report(env.cfg, ctx)


STAGE_FUNCTIONS: dict[str, Callable[[StudyEnv, Any, StageContext], dict[str, Any]]] = {
    "bias": stage_bias,
    "nas": stage_nas,
    "conditions": stage_conditions,
    "ablation": stage_ablation,
    "finetune": stage_finetune,
    "after": stage_after,
    "report": stage_report,
}
"""Stage kind -> function, looked up at run time (tests wrap them to count calls)."""


# ============================================================================================ the result


@dataclass
class StudyResult:
    """A finished study.

    Attributes:
        out_dir: where report.md, results.json, the CSVs and ``stages/`` are.
        figures_dir: where the figures were copied.
        config: the config it ran.
        stages: every finished stage by name (``.cached`` says whether this run reused it).
        results: what ``results.json`` holds.
        figures: the figure files in ``figures_dir``.
    """

    out_dir: Path
    figures_dir: Path
    config: StudyConfig
    stages: dict[str, StageOutput]
    results: dict[str, Any]
    figures: list[Path] = field(default_factory=list)

    @property
    def executed(self) -> list[str]:
        """The stages this run computed (not found in the cache)."""
        return [n for n, s in self.stages.items() if not s.cached]

    @property
    def cached(self) -> list[str]:
        return [n for n, s in self.stages.items() if s.cached]

    @property
    def report_path(self) -> Path:
        return self.out_dir / REPORT_FILE

    def timings_frame(self) -> pd.DataFrame:
        """One row per stage: ``stage, kind, model, seconds, cpu_seconds, cached`` (the times of the run that
        computed it)."""
        rows = []
        for name, s in self.stages.items():
            kind, _, model = name.partition("@")
            rows.append({"stage": name, "kind": kind, "model": model or None, "seconds": s.seconds,
                         "cpu_seconds": s.cpu_seconds, "cached": s.cached})
        return pd.DataFrame(rows)

    def to_dataframe(self) -> pd.DataFrame:
        """Long format bias metrics: ``model, dataset, phase, metric, value, ci_low, ci_high, n``."""
        return bias_frame(self.results)

    def summary(self) -> str:
        lines = [f"study in {self.out_dir} ({len(self.executed)} stages run, {len(self.cached)} reused)"]
        for model, r in self.results.get("models", {}).items():
            main = self.config.data.dataset
            b = r.get("bias", {}).get("datasets", {}).get(main)
            if b:
                lines.append(f"  {model} on {main}: accuracy {b['accuracy']:.3f}, recall {b['recall']:.3f}, "
                             f"yes-rate {b['yes_rate']:.3f}, precision-recall gap {_fmt(b['pr_gap'])}")
            a = r.get("after", {}).get("datasets", {}).get(main)
            if a:
                m = a["after"]
                lines.append(f"    after NASA: accuracy {m['accuracy']:.3f}, recall {m['recall']:.3f}, yes-rate {m['yes_rate']:.3f}")
        lines.append(f"report: {self.report_path}")
        return "\n".join(lines)

    @classmethod
    def load(cls, out_dir: str | Path) -> StudyResult:
        """Read a finished study folder (``results.json`` and the stage index in ``timings.json``)."""
        out = Path(out_dir)
        results = read_json(out / RESULTS_FILE)
        cfg = StudyConfig.from_dict(results["config"], source=str(out / RESULTS_FILE))
        timings = read_json(out / TIMINGS_FILE)
        stages = {
            t["stage"]: StageOutput(t["stage"], t["key"], out / STAGES_DIR / t["folder"],
                                    read_json(out / STAGES_DIR / t["folder"] / "done.json")["summary"], True, t["seconds"],
                                    float(t.get("cpu_seconds") or float("nan")))
            for t in timings["stages"]
        }
        figures_dir = Path(timings.get("figures_dir", out / "figures"))
        return cls(out, figures_dir, cfg, stages, results, sorted(figures_dir.glob("*.*")) if figures_dir.is_dir() else [])


def _fmt(x: Any, spec: str = ".3f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def bias_frame(results: dict[str, Any]) -> pd.DataFrame:
    """``results.json`` -> long bias metrics ``model, dataset, phase, metric, value, ci_low, ci_high, n``."""
    from nasa_lens.evaluate import METRIC_KEYS

    rows = []
    for model, r in results.get("models", {}).items():
        phases = [("before", r.get("bias", {}).get("datasets", {}))]
        phases.append(("after", {ds: v["after"] for ds, v in r.get("after", {}).get("datasets", {}).items()}))
        for phase, per_ds in phases:
            for ds, m in per_ds.items():
                for k in METRIC_KEYS:
                    lo, hi = (m.get("ci", {}).get(k) or [None, None])
                    rows.append({"model": model, "dataset": ds, "phase": phase, "metric": k, "value": m.get(k),
                                 "ci_low": lo, "ci_high": hi, "n": m.get("n")})
    return pd.DataFrame(rows, columns=["model", "dataset", "phase", "metric", "value", "ci_low", "ci_high", "n"])


# ============================================================================================ running


def run_study(
    cfg: StudyConfig,
    out_dir: str | os.PathLike[str],
    *,
    figures_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> StudyResult:
    """Run (or resume) the study ``cfg`` into ``out_dir``; copy the figures into ``figures_dir``
    (default ``out_dir/figures``). See the module docstring for the stages and files."""
    out = Path(out_dir)
    figs = Path(figures_dir) if figures_dir is not None else out / "figures"
    out.mkdir(parents=True, exist_ok=True)
    store = StageStore(out / STAGES_DIR, _version())
    env = StudyEnv(cfg, progress=progress)
    done: dict[str, StageOutput] = {}
    plan = plan_stages(cfg)
    t0 = time.perf_counter()
    for i, st in enumerate(plan):
        upstream = [done[u] for u in st.upstream]
        fn = STAGE_FUNCTIONS[st.kind]
        logger.info("[%d/%d] %s", i + 1, len(plan), st.name)
        done[st.name] = store.run(st.name, st.inputs, upstream, lambda ctx, fn=fn, st=st: fn(env, st.model, ctx))
        if st.model is not None and not any(p.model == st.model for p in plan[i + 1:]):
            env.drop_model(st.model)  # its last stage: free the memory
    results = done["report"].summary
    figures = _publish(cfg, out, figs, done, results)
    write_json(
        out / TIMINGS_FILE,
        {
            "total_seconds_this_run": time.perf_counter() - t0,
            "figures_dir": str(figs),
            "stages": [
                {"stage": n, "key": s.key, "folder": s.path.name, "seconds": s.seconds, "cpu_seconds": s.cpu_seconds,
                 "cached": s.cached}
                for n, s in done.items()
            ],
        },
    )
    result = StudyResult(out, figs, cfg, done, results, figures)
    write_text(out / REPORT_FILE, report_markdown(result))
    logger.info("study finished: %s", out / REPORT_FILE)
    return result


def _publish(cfg: StudyConfig, out: Path, figs: Path, done: dict[str, StageOutput], results: dict[str, Any]) -> list[Path]:
    """Copy the report stage's results.json, CSVs and figures to their public places (atomically)."""
    report = done["report"].path
    write_json(out / RESULTS_FILE, results)
    for csv in sorted((report / "tables").glob("*.csv")):
        _copy(csv, out / csv.name)
    written = []
    for fig in sorted((report / "figures").glob("*")):
        if fig.suffix in (".html", ".png") or fig.name == "plotly.min.js":  # the HTML figures share that bundle
            written.append(_copy(fig, figs / fig.name))
    return written


def _copy(src: Path, dst: Path) -> Path:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return dst


# ============================================================================================ report


ABLATION_FILE = "ablation.csv"
CURVE_DIR = "curve"
TRAINING_CURVE_COLUMNS = ("train_loss", "val_loss", "val_pr_gap", "val_yes_rate", "val_accuracy")
HISTORY_FILE = "history.csv"


def build_report(cfg: StudyConfig, ctx: StageContext) -> dict[str, Any]:
    """Write figures (``ctx.work/figures``) and tables (``ctx.work/tables``) from the upstream stages;
    return the results dictionary (config + per-model stage summaries + figure names)."""
    from nasa_lens import plots, plots_study

    figdir, tables = ctx.work / "figures", ctx.work / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"version": _version(), "config": cfg.to_dict(), "models": {}, "figures": {}}
    frames: dict[str, list[pd.DataFrame]] = {"nas_ranking": [], "conditions": [], "ablation": [], "finetune_history": [], "deltas": []}
    nas_by_model: dict[str, Any] = {}

    pending: list[tuple[Any, str]] = []

    def save(fig: Any, name: str) -> str:  # written below, all at once
        pending.append((fig, name))
        return name

    def tagged(frame: pd.DataFrame, model: str) -> pd.DataFrame:
        frame = frame.copy()
        frame.insert(0, "model", model)
        return frame

    for m in cfg.models:
        sm = safe_name(m)
        stages = {kind: ctx.upstream.get(_stage_name(kind, m)) for kind in STAGE_ORDER[:-1]}
        summary = {kind: st.summary for kind, st in stages.items() if st is not None}
        figs: dict[str, str] = {}
        nas = _load_nas(stages["nas"])
        nas_by_model[m] = nas
        figs["nas_heatmap"] = save(plots.nas_heatmap(nas, title=f"Mean NAS: {m} on {nas.dataset} ({nas.format}, {nas.positions}, n={nas.n})"),
                                   f"nas_heatmap_{sm}")
        figs["nas_top_heads"] = save(plots.top_heads_bar(nas, k=min(cfg.nas.top_k, nas.n_layers * nas.n_heads),
                                                         title=f"Top NAS heads of {m} (bars: +-1 stderr)"), f"nas_top_heads_{sm}")
        frames["nas_ranking"].append(tagged(nas.ranking_frame(), m))
        if stages["conditions"] is not None:
            conds = _load_conditions(stages["conditions"])
            figs["conditions_heatmaps"] = save(plots.heatmap_grid(conds, title=f"Mean NAS of {m} by condition (shared scale)"),
                                               f"conditions_heatmaps_{sm}")
            corr = pd.read_csv(stages["conditions"].path / "correlations.csv")
            frames["conditions"].append(tagged(corr, m))
            figs["condition_agreement"] = save(plots_study.condition_agreement(corr, title=f"{m}: agreement of the NAS ranking across conditions"),
                                               f"condition_agreement_{sm}")
        if stages["ablation"] is not None:
            from nasa_lens.causal import AblationCurveResult
            from nasa_lens.plots_causal import ablation_curve_figure

            curve = AblationCurveResult.load(stages["ablation"].path / CURVE_DIR)
            frames["ablation"].append(tagged(curve.to_dataframe(), m))
            figs["ablation"] = save(
                ablation_curve_figure(curve, title=f"{m}: ablating k heads ({cfg.ablation.mode}): top NAS heads vs random and "
                                                   f"bottom heads, n={len(curve.ids)}, 95% paired bootstrap bands"),
                f"ablation_{sm}",
            )
        if stages["finetune"] is not None:
            hist = pd.read_csv(stages["finetune"].path / HISTORY_FILE)
            frames["finetune_history"].append(tagged(hist, m))
            cols = [c for c in TRAINING_CURVE_COLUMNS if c in hist.columns]
            figs["training_curve"] = save(plots_study.training_curve(hist, columns=cols or None,
                                                                     title=f"{m}: NASA fine-tune of heads {summary['finetune'].get('heads', '')}"),
                                          f"training_curve_{sm}")
        if stages["after"] is not None:
            for ds, v in summary["after"]["datasets"].items():
                for metric, d in v["delta"].items():
                    if metric == "mcnemar":
                        continue
                    frames["deltas"].append(pd.DataFrame([{"model": m, "dataset": ds, "metric": metric, "delta": d["delta"],
                                                           "ci_low": d["ci"][0], "ci_high": d["ci"][1],
                                                           "mcnemar_p": v["delta"]["mcnemar"]["p_value"]}]))
        results["models"][m] = summary
        if stages["after"] is not None:
            figs["before_after"] = save(plots_study.before_after_bars(bias_frame({"models": {m: summary}}), m), f"before_after_{sm}")
        results["figures"][m] = figs
    bias = bias_frame(results)
    side: dict[str, str] = {"bias_metrics": save(plots_study.metrics_by_model(bias), "models_bias_metrics")}
    if len(cfg.models) > 1:
        side["nas_heatmaps"] = save(plots_study.nas_heatmaps_by_model(nas_by_model), "models_nas_heatmaps")
        if (bias["phase"] == "after").any():
            side["bias_metrics_after"] = save(plots_study.metrics_by_model(bias, phase="after"), "models_bias_metrics_after")
    results["figures"]["side_by_side"] = side
    # Each PNG export starts a browser in a child process: two at a time keeps both cores busy.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda item: plots.save_figure(item[0], figdir / item[1], png=cfg.report.png, include_plotlyjs="directory"), pending))
    _write_csv(tables / "bias_metrics.csv", bias)
    for name, parts in frames.items():
        if parts:
            _write_csv(tables / f"{name}.csv", pd.concat(parts, ignore_index=True))
    return results


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


# ------------------------------------------------------------------------------------------- markdown


def _ci(m: dict[str, Any], k: str) -> str:
    lo, hi = (m.get("ci", {}).get(k) or [None, None])
    return f"{_fmt(m.get(k))} [{_fmt(lo)}, {_fmt(hi)}]"


def _pct(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{100 * x:.0f}%"


def _figure_md(result: StudyResult, name: str | None, caption: str) -> str:
    if not name:
        return ""
    rel = Path(os.path.relpath(result.figures_dir, result.out_dir))
    png, html = result.figures_dir / f"{name}.png", rel / f"{name}.html"
    if png.is_file():
        return f"![{caption}]({(rel / f'{name}.png').as_posix()})\n\n*{caption}* ([interactive]({html.as_posix()}))\n"
    return f"*{caption}*: [{name}.html]({html.as_posix()})\n"


def _bias_sentence(model: str, ds: str, m: dict[str, Any]) -> str:
    """One sentence: the yes-rate (with its interval) against the 50% of label-balanced data, and the gap."""
    yes = m.get("yes_rate")
    lo, hi = (m.get("ci", {}).get("yes_rate") or [None, None])
    head = f"- {model} on {ds} (n={m.get('n')}): yes-rate {_pct(yes)} [{_pct(lo)}, {_pct(hi)}] on label-balanced data (unbiased: 50%)"
    if yes is not None and yes == 0:
        return head + ": it answers \"No\" to every question, recall 0 - the extreme form of the negative bias."
    if yes is not None and yes == 1:
        return head + ": it answers \"Yes\" to every question - a positive bias."
    if hi is not None and hi < 0.5:
        verdict = "a negative bias (the interval lies below 50%)"
    elif lo is not None and lo > 0.5:
        verdict = "a positive bias (the interval lies above 50%)"
    else:
        verdict = "no bias this sample can resolve (the interval contains 50%)"
    return (f"{head}: {verdict}; precision {_fmt(m.get('precision'))} vs recall {_fmt(m.get('recall'))}, "
            f"gap {_ci(m, 'pr_gap')} (positive: the negative-bias signature).")


def _ablation_sentence(model: str, ab: dict[str, Any]) -> str:
    rows = ab.get("by_k", [])
    if not rows:
        return ""

    def finite(x: Any) -> bool:
        return x is not None and isinstance(x, (int, float)) and math.isfinite(x)

    more = [r for r in rows if finite(r["yes_rate_top_delta"]) and finite(r["yes_rate_random_mean_delta"])
            and r["yes_rate_top_delta"] > r["yes_rate_random_mean_delta"]]
    significant = [r for r in more if finite(r["p_top_vs_random"]) and r["p_top_vs_random"] < 0.05]
    if more:
        direction = (f"raises the yes-rate more than ablating as many random heads at {len(more)} of {len(rows)} head counts"
                     f" ({'significantly (permutation p < 0.05) at ' + str(len(significant)) + ' of them' if significant else 'at none of them significantly: every permutation p >= 0.05'})")
    else:
        direction = "does not raise the yes-rate more than ablating as many random heads at any head count"
    best = max(rows, key=lambda r: (r["yes_rate_top_delta"] - r["yes_rate_random_mean_delta"])
               if finite(r["yes_rate_top_delta"]) and finite(r["yes_rate_random_mean_delta"]) else -math.inf)
    lo, hi = best["yes_rate_top_delta_ci"]
    verdict = ("consistent with these heads causing part of the negative bias" if significant else
               "so this sample does not show that these heads cause the negative bias")
    last = rows[-1]
    ld_top, ld_rand = last.get("logit_diff_top_delta"), last.get("logit_diff_random_mean_delta")
    ld_dir = ("towards \"Yes\"" if finite(ld_top) and ld_top > 0 else "towards \"No\"" if finite(ld_top) and ld_top < 0 else "not at all")
    logit = (f" The logit difference logit(Yes) - logit(No), a finer measure than the thresholded yes-rate, moves {ld_dir} "
             f"with the top-{last['k']} heads ablated ({_fmt(ld_top, '+.3f')}, vs {_fmt(ld_rand, '+.3f')} for random heads; "
             f"p={_fmt(last.get('p_logit_diff_top_vs_random'), '.3g')}).")
    return (f"- {model}: without ablation the yes-rate is {_pct(ab.get('baseline_yes_rate'))} (n={ab.get('n')}). Ablating the top-k "
            f"NAS heads {direction}. Largest margin at k={best['k']} (heads {best['heads_top']}): yes-rate "
            f"{_pct(best['yes_rate_top'])} (change {_fmt(best['yes_rate_top_delta'], '+.3f')} [{_fmt(lo, '+.3f')}, {_fmt(hi, '+.3f')}]) "
            f"vs {_pct(best['yes_rate_random_mean'])} for random heads and {_pct(best['yes_rate_bottom'])} for the bottom-k heads "
            f"(p={_fmt(best['p_top_vs_random'], '.3g')}); {verdict}.{logit}")


def report_markdown(result: StudyResult) -> str:
    """The text of ``report.md``: every measured number with its interval, the figures, and generated
    sentences saying which way each result points."""
    cfg, res = result.config, result.results
    d = cfg.data
    L: list[str] = ["# Negative bias in yes/no answers: study report", ""]
    L += [
        f"nasa-lens {res.get('version')} - models: {', '.join(cfg.models)} - main dataset **{d.dataset}** "
        f"(train n={d.train_limit}, test n={d.test_limit}), generalisation: {', '.join(d.generalisation) or 'none'} - "
        f"prompt format {d.format} - seed {cfg.seed} - config hash `{cfg.hash()}`.",
        "",
        "Stages: bias report, NAS scan (negative attention score, Yu et al. NAACL 2025), instruction-agnostic checks, "
        "ablation against controls, NASA fine-tune of the flagged heads, after-report and generalisation. "
        "Intervals are 95% percentile bootstrap intervals over examples; NAS errors are +-1 standard error.",
        "",
    ]
    side = res.get("figures", {}).get("side_by_side", {})
    models = res.get("models", {})
    figs = res.get("figures", {})

    L += ["## 1. Bias report (before any change)", ""]
    L += ["| model | dataset | n | accuracy | precision | recall | precision - recall | yes-rate | AUROC |",
          "|---|---|---|---|---|---|---|---|---|"]
    for m, r in models.items():
        for ds, x in r.get("bias", {}).get("datasets", {}).items():
            L.append(f"| {m} | {ds} | {x['n']} | {_ci(x, 'accuracy')} | {_ci(x, 'precision')} | {_ci(x, 'recall')} | "
                     f"{_ci(x, 'pr_gap')} | {_ci(x, 'yes_rate')} | {_fmt(x.get('auroc'))} |")
    L.append("")
    for m, r in models.items():
        for ds, x in r.get("bias", {}).get("datasets", {}).items():
            L.append(_bias_sentence(m, ds, x))
    L += ["", _figure_md(result, side.get("bias_metrics"), "Bias metrics by model and dataset"), ""]

    L += ["## 2. NAS scan", ""]
    for m, r in models.items():
        n = r.get("nas", {})
        if not n:
            continue
        top = n.get("top_heads", [])[: cfg.report.top_k]
        heads = ", ".join(f"{h['head']} ({_fmt(h['nas_mean'])} +- {_fmt(h['nas_stderr'])})" for h in top)
        L.append(f"- {m} ({n['shape'][0]} layers x {n['shape'][1]} heads, n={n['n']} train examples, positions={n['positions']}): "
                 f"top heads {heads}. {_pct(n.get('share_positive'))} of heads attend more to \"No\" than to \"Yes\" on average "
                 f"(positive mean NAS).")
        L.append("")
        L.append(_figure_md(result, figs.get(m, {}).get("nas_heatmap"), f"Mean NAS per head, {m} (red: attends to \"No\")"))
    if side.get("nas_heatmaps"):
        L += [_figure_md(result, side["nas_heatmaps"], "Mean NAS, models side by side (shared colour scale)"), ""]

    L += ["## 3. Instruction-agnostic checks", "",
          "Is the ranking of heads a property of the head or of one instruction? The same heads are scored under other "
          "prompt formats (candidate order, other words) and on other datasets; Spearman r compares the per-head mean NAS, "
          "the top-k overlap the sets of flagged heads.", ""]
    for m, r in models.items():
        c = r.get("conditions")
        if not c:
            continue
        L += ["| model | condition a | condition b | Spearman r | p | top-k overlap |", "|---|---|---|---|---|---|"]
        for row in c["correlations"]:
            L.append(f"| {m} | {row['a']} | {row['b']} | {_fmt(row['spearman_r'])} | {_fmt(row['spearman_p'], '.2g')} | "
                     f"{_fmt(row['top_k_overlap'], '.2f')} (k={row['k']}) |")
        v = c["vs_main"]
        r_mean = v.get("spearman_mean")
        verdict = ("largely instruction-agnostic" if r_mean is not None and math.isfinite(r_mean) and r_mean >= 0.5
                   else "only partly shared across conditions" if r_mean is not None and math.isfinite(r_mean) and r_mean > 0
                   else "not shared across conditions")
        L += ["", f"- {m}: against the main condition ({c['main']}) the mean Spearman r is {_fmt(r_mean)} (lowest {_fmt(v.get('spearman_min'))}), "
                  f"mean top-{c['k']} overlap {_fmt(v.get('top_k_overlap_mean'), '.2f')}: the NAS ranking is {verdict}.", ""]
        L.append(_figure_md(result, figs.get(m, {}).get("conditions_heatmaps"), f"Mean NAS by condition, {m}"))

    L += ["## 4. Ablation against controls", "",
          f"The top-k NAS heads are ablated ({cfg.ablation.mode} ablation) on the test split and the yes-rate measured; controls: "
          f"{cfg.ablation.n_random} random head sets per k and the bottom-k heads. If the flagged heads cause the negative bias, "
          "ablating them should raise the yes-rate more than the controls.", ""]
    for m, r in models.items():
        ab = r.get("ablation")
        if not ab:
            continue
        L += ["| model | k | yes-rate top-k (change [95% CI]) | yes-rate random (mean +- sd) | yes-rate bottom-k | p top vs random | "
              "accuracy top-k / random | logit-diff change top-k / random |",
              "|---|---|---|---|---|---|---|---|"]
        for row in ab["by_k"]:
            lo, hi = row["yes_rate_top_delta_ci"]
            L.append(f"| {m} | {row['k']} | {_fmt(row['yes_rate_top'])} ({_fmt(row['yes_rate_top_delta'], '+.3f')} [{_fmt(lo, '+.3f')}, "
                     f"{_fmt(hi, '+.3f')}]) | {_fmt(row['yes_rate_random_mean'])} +- {_fmt(row['yes_rate_random_sd'])} | "
                     f"{_fmt(row['yes_rate_bottom'])} | {_fmt(row['p_top_vs_random'], '.3g')} | {_fmt(row['accuracy_top'])} / "
                     f"{_fmt(row['accuracy_random_mean'])} | {_fmt(row['logit_diff_top_delta'], '+.3f')} / "
                     f"{_fmt(row['logit_diff_random_mean_delta'], '+.3f')} |")
        L += ["", _ablation_sentence(m, ab), ""]
        L.append(_figure_md(result, figs.get(m, {}).get("ablation"),
                            f"Change in yes-rate and in logit(Yes) - logit(No) vs the number of ablated heads, {m}"))

    L += ["## 5. NASA fine-tune", ""]
    any_ft = False
    for m, r in models.items():
        ft = r.get("finetune")
        if not ft:
            continue
        any_ft = True
        vb, va = ft.get("val_before") or {}, ft.get("val_after") or {}
        L += [f"- {m}: trained {ft.get('n_params', 0):,} parameters (the query rows of heads {ft.get('heads')}) for "
              f"{ft.get('steps_done')} steps (batch {ft.get('nasa', {}).get('batch_size')}, lr {ft.get('nasa', {}).get('lr')}) on "
              f"{ft.get('n_train')} training examples, {ft.get('n_val')} held out; training loss {_fmt(ft.get('train_loss_first'))} -> "
              f"{_fmt(ft.get('train_loss_last'))}; validation yes-rate {_pct(vb.get('yes_rate'))} -> {_pct(va.get('yes_rate'))}, "
              f"accuracy {_fmt(vb.get('accuracy'))} -> {_fmt(va.get('accuracy'))} (kept: step {ft.get('best_step')}"
              f"{', stopped early' if ft.get('stopped_early') else ''}).", ""]
        L.append(_figure_md(result, figs.get(m, {}).get("training_curve"), f"Training curve, {m}"))
    if not any_ft:
        L += ["The fine-tune is disabled in this config.", ""]

    L += ["## 6. After the fine-tune, and generalisation", ""]
    for m, r in models.items():
        af = r.get("after")
        if not af:
            continue
        L += ["| model | dataset | metric | before | after | change [95% CI] |", "|---|---|---|---|---|---|"]
        before = r["bias"]["datasets"]
        for ds, v in af["datasets"].items():
            for k in ("accuracy", "recall", "precision", "pr_gap", "yes_rate"):
                dd = v["delta"][k]
                L.append(f"| {m} | {ds} | {k} | {_fmt(before[ds].get(k))} | {_fmt(v['after'].get(k))} | "
                         f"{_fmt(dd['delta'], '+.3f')} [{_fmt(dd['ci'][0], '+.3f')}, {_fmt(dd['ci'][1], '+.3f')}] |")
        L.append("")
        for ds, v in af["datasets"].items():
            dg, dy, dacc = v["delta"]["pr_gap"], v["delta"]["yes_rate"], v["delta"]["accuracy"]
            role = "the training task (held-out test split)" if ds == cfg.data.dataset else "a dataset not trained on (generalisation)"
            def moved(dd: dict[str, Any]) -> str:
                lo, hi = dd["ci"]
                if dd["delta"] is None or lo is None or hi is None:
                    return "undefined on this sample"
                if lo > 0 or hi < 0:
                    return "a change the interval resolves"
                return "within noise (the interval contains 0)"
            mc = v["delta"]["mcnemar"]
            L.append(f"- {m} on {ds}, {role}: yes-rate {_pct(before[ds].get('yes_rate'))} -> {_pct(v['after'].get('yes_rate'))} "
                     f"({moved(dy)}); precision-recall gap {_fmt(before[ds].get('pr_gap'))} -> {_fmt(v['after'].get('pr_gap'))} "
                     f"({'n/a' if dg['delta'] is None else 'smaller' if dg['delta'] < 0 else 'larger' if dg['delta'] > 0 else 'unchanged'}, {moved(dg)}); "
                     f"accuracy {_fmt(dacc['delta'], '+.3f')} ({moved(dacc)}); answers fixed {mc['fixed']}, broken {mc['broken']} "
                     f"(McNemar p={_fmt(mc['p_value'], '.2g')}).")
        L += ["", _figure_md(result, figs.get(m, {}).get("before_after"), f"Before vs after the fine-tune, {m}"), ""]
    if side.get("bias_metrics_after"):
        L += [_figure_md(result, side["bias_metrics_after"], "Bias metrics after the fine-tune, models side by side"), ""]

    L += ["## Stages and timings", "",
          "Wall-clock and process CPU seconds of the run that computed each stage (CPU time counts every thread).", "",
          "| stage | seconds | CPU seconds | this run |", "|---|---|---|---|"]
    for name, s in result.stages.items():
        L.append(f"| {name} | {s.seconds:.1f} | {_fmt(s.cpu_seconds, '.1f')} | {'reused (cached)' if s.cached else 'computed'} |")
    total = sum(s.seconds for s in result.stages.values())
    L.append(f"| total | {total:.1f} | {_fmt(sum(s.cpu_seconds for s in result.stages.values()), '.1f')} | |")
    L += ["", f"Files: `results.json` (every number above), `bias_metrics.csv`, `nas_ranking.csv`, `conditions.csv`, `ablation.csv`, "
              f"`finetune_history.csv`, `deltas.csv`; stage outputs under `stages/`; figures in `{os.path.relpath(result.figures_dir, result.out_dir)}/`.", ""]
    return "\n".join(line for line in L if line is not None)
