"""The stage functions of the study: what each stage computes from the models and data of a
:class:`StudyEnv` and writes into its folder (``ctx.work``); :data:`STAGE_FUNCTIONS` maps a stage kind to
its function (see :mod:`nasa_lens.study.pipeline` for the plan and the cache)."""
from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from nasa_lens.config import StudyConfig
from nasa_lens.io import atomic_path, write_json
from nasa_lens.study.stages import StageContext, safe_name

from nasa_lens.vocab import (
    COMPARISON_PARTIAL_FILE,
    CONDITION_LABELS_FILE,
    CORRELATIONS_FILE,
    HISTORY_FILE,
    SUMMARY_METRICS,
    VECTOR_METRICS,
)
from nasa_lens.study.common import ABLATION_FILE, CURVE_DIR, load_nas, stage_name, write_csv

logger = logging.getLogger("nasa_lens.study")


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


def stage_conditions(env: StudyEnv, model_name: str, ctx: StageContext) -> dict[str, Any]:
    """The NAS ranking under each prompt format and on further datasets, and how well they agree."""
    from nasa_lens.nas import condition_correlations, scan_nas
    from nasa_lens.prompts import PromptFormat

    cfg = env.cfg
    c = cfg.conditions
    model = env.model(model_name)
    main = load_nas(ctx.upstream[stage_name("nas", model_name)])
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
    write_json(ctx.work / "conditions" / CONDITION_LABELS_FILE, list(results))
    with atomic_path(ctx.work / CORRELATIONS_FILE) as tmp:
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


def stage_ablation(env: StudyEnv, model_name: str, ctx: StageContext) -> dict[str, Any]:
    """Ablate the top-k NAS heads, the bottom-k heads and random head sets on the test split
    (:func:`nasa_lens.causal.ablation_curve`: paired bootstrap intervals, permutation p-values vs random)."""
    from nasa_lens import causal

    cfg = env.cfg
    a = cfg.ablation
    model = env.model(model_name)
    nas = load_nas(ctx.upstream[stage_name("nas", model_name)])
    data = env.dataset(cfg.data.dataset, "test", env.n_ablation)
    result = causal.ablation_curve(
        model, data, nas.mean, ks=list(a.ks), mode=a.mode, n_random_seeds=a.n_random, fmt=env.format, progress=env.progress,
        seed=cfg.seed, batch_size=cfg.batch_size, threshold=cfg.bias.threshold, n_boot=cfg.bias.n_boot, n_perm=a.n_perm,
        positions=a.positions,
    )
    result.save(ctx.work / CURVE_DIR)
    write_csv(ctx.work / ABLATION_FILE, result.to_wide())
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
    """The :class:`nasa_lens.finetune.NASAConfig` of the fine-tune stage (raises ConfigError on a bad option)."""
    from nasa_lens.config import ConfigError
    from nasa_lens.finetune.config import NASAConfig

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
    from nasa_lens import finetune as nasa

    cfg = env.cfg
    model = env.model(model_name)
    nas = load_nas(ctx.upstream[stage_name("nas", model_name)])
    data = env.dataset(cfg.data.dataset, "train", cfg.data.train_limit)
    train, val = nasa.holdout_split(list(data), cfg.finetune.val_fraction, seed=cfg.seed)
    ncfg = nasa_config(cfg, progress=env.progress)
    result = nasa.train_nasa(model, train, val, ncfg, ranking=nas.mean, checkpoint_dir=ctx.checkpoint_dir, resume=True)
    result.save(ctx.work / "adapter", model)
    long = result.to_dataframe()
    wide = (long.assign(name=long["split"] + "_" + long["metric"]).pivot_table(index="step", columns="name", values="value")
            .reset_index() if len(long) else pd.DataFrame({"step": []}))
    write_csv(ctx.work / HISTORY_FILE, wide)

    def val_metrics(r: Any) -> dict[str, Any] | None:
        return None if r is None else {k: r.metrics[k] for k in SUMMARY_METRICS}

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
    ft = ctx.upstream[stage_name("finetune", model_name)]
    before_stage = ctx.upstream[stage_name("bias", model_name)]
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
    """``after - before`` for each metric of :data:`VECTOR_METRICS` with a paired percentile-bootstrap interval
    (the same resampled examples for both), and an exact McNemar p-value on the per-example correctness."""
    from scipy import stats

    from nasa_lens.evaluate import bias_metrics

    if list(before.ids) != list(after.ids):
        raise ValueError("paired_deltas needs the same examples in the same order before and after")
    y = np.asarray(before.labels, int)
    pb, pa = np.asarray(before.p_yes, float), np.asarray(after.p_yes, float)
    db, da = np.asarray(before.logit_diff, float), np.asarray(after.logit_diff, float)
    thr = float(before.threshold)
    point = {k: after.metrics[k] - before.metrics[k] for k in VECTOR_METRICS}
    rng = np.random.default_rng(seed)
    n = len(y)
    draws: dict[str, list[float]] = {k: [] for k in VECTOR_METRICS}
    for _ in range(n_boot if n else 0):
        i = rng.integers(0, n, n)
        mb = bias_metrics(y[i], pb[i], thr, db[i])
        ma = bias_metrics(y[i], pa[i], thr, da[i])
        for k in VECTOR_METRICS:
            draws[k].append(ma[k] - mb[k])
    out: dict[str, Any] = {}
    for k in VECTOR_METRICS:
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


def stage_compare(env: StudyEnv, model_name: str, ctx: StageContext) -> dict[str, Any]:
    """De-biasing fixes side by side (:func:`nasa_lens.debias.compare_fixes`): fitted on the train sample of the
    main dataset, evaluated on the test split of every report dataset; writes what ``nasa-lens compare`` writes."""
    from nasa_lens.debias import compare_fixes
    from nasa_lens.debias.compare import method_options

    cfg = env.cfg
    c = cfg.compare
    train = list(env.dataset(cfg.data.dataset, "train", cfg.data.train_limit))
    tests = {ds: env.dataset(ds, "test", cfg.data.test_limit) for ds in cfg.data.eval_datasets}
    options = method_options(k=c.k, fit_limit=min(c.fit_limit, len(train)), steps=c.steps, seed=cfg.seed,
                             format=cfg.data.format, batch_size=cfg.batch_size)
    result = compare_fixes(env.model(model_name), train, tests, c.methods, options=options, format=cfg.data.format,
                           batch_size=cfg.batch_size, n_boot=cfg.bias.n_boot, seed=cfg.seed, progress=env.progress,
                           partial=ctx.work / COMPARISON_PARTIAL_FILE)
    result.save(ctx.work)
    result.write_report(ctx.work)
    keep = ["accuracy", "pr_gap", "yes_rate", "auroc", "params"]  # no timings: the summary is deterministic (fit times: comparison.csv)
    return {"rows": result.frame[["method", "dataset", *keep]].to_dict(orient="records"), "heads": result.meta["heads"]}


def stage_report(env: StudyEnv, model_name: None, ctx: StageContext) -> dict[str, Any]:
    """Figures (per model and side by side), CSVs and the results dictionary, from the finished stages.

    Returns what ``results.json`` holds: the config, and per model the summary of every stage."""
    from nasa_lens.study.figures import build_report

    return build_report(env.cfg, ctx)


STAGE_FUNCTIONS: dict[str, Callable[[StudyEnv, Any, StageContext], dict[str, Any]]] = {
    "bias": stage_bias,
    "nas": stage_nas,
    "conditions": stage_conditions,
    "ablation": stage_ablation,
    "finetune": stage_finetune,
    "after": stage_after,
    "compare": stage_compare,
    "report": stage_report,
}
"""Stage kind -> function, looked up at run time (tests wrap them to count calls)."""


# ============================================================================================ the result
