"""Ablation: one head set ablated, metrics before / after (:func:`ablate`, ``nasa-lens ablate``), and the
ablation curve (:func:`ablation_curve`): the top-k NAS heads for each k side by side with k random heads
(several seeds) and the k lowest-NAS heads, with paired bootstrap CIs and permutation p-values."""
from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from nasa_lens.evaluate import EvalResult, bias_metrics, result_from_predictions
from nasa_lens.heads import Head, format_head, parse_heads, random_heads, ranked_heads
from nasa_lens.interventions import HeadAblation, ZReference, collect_z_reference
from nasa_lens.io import atomic_path, read_json, write_json
from nasa_lens.parallel import over_examples
from nasa_lens.prompts import PromptFormat, by_batch_plan, iter_batches

from nasa_lens.causal.config import AblationConfig, AblationCurveConfig, CausalError
from nasa_lens.causal.headsets import runner_for
from nasa_lens.causal.runner import (
    example_ids,
    example_labels,
    p_yes_and_logit_diff,
    percentile_interval,
    ranking_array,
    vector_metrics,
)

from nasa_lens.vocab import ABLATION_FILE, METRICS_FILE, PREDICTIONS_FILE

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel

logger = logging.getLogger(__name__)


@dataclass
class AblationResult:
    """Metrics before and after ablating ``heads`` (``metrics.json`` of ``nasa-lens ablate``)."""

    before: EvalResult
    after: EvalResult
    heads: list[Head]
    mode: str
    config: dict[str, Any] = field(default_factory=dict)

    def delta(self) -> dict[str, float]:
        return {k: self.after.metrics[k] - self.before.metrics[k] for k in self.before.metrics}

    def to_json(self) -> dict[str, Any]:
        return {
            "before": self.before.metrics_json(),
            "after": self.after.metrics_json(),
            "delta": self.delta(),
            "heads": [list(h) for h in self.heads],
            "mode": self.mode,
            "config": self.config,
        }

    def to_dataframe(self) -> pd.DataFrame:
        """One row per metric: before, after, delta, and the after-run's 95% interval."""
        rows = []
        for k, v in self.before.metrics.items():
            lo, hi = self.after.ci.get(k, (float("nan"), float("nan")))
            rows.append({"metric": k, "before": v, "after": self.after.metrics[k], "delta": self.after.metrics[k] - v,
                         "after_ci_low": lo, "after_ci_high": hi})
        return pd.DataFrame(rows)

    def save(self, out_dir: str | Path) -> Path:
        """Write ``metrics.json`` and ``predictions.csv`` (per example: p_yes / logit diff before and after)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / METRICS_FILE, self.to_json())
        b, a = self.before.to_dataframe(), self.after.to_dataframe()
        frame = b.rename(columns={"p_yes": "p_yes_before", "pred": "pred_before", "logit_diff": "logit_diff_before"})
        frame["p_yes_after"], frame["pred_after"], frame["logit_diff_after"] = a["p_yes"], a["pred"], a["logit_diff"]
        with atomic_path(out / PREDICTIONS_FILE) as tmp:
            frame.to_csv(tmp, index=False)
        return out


def ablate(
    model: LoadedModel,
    dataset: Sequence[Any],
    config: AblationConfig | None = None,
    *,
    ranking: Any = None,
    reference: ZReference | None = None,
    progress: bool = True,
) -> AblationResult:
    """Evaluate ``dataset`` clean and with ``config.heads`` ablated (same batches, paired)."""
    cfg = config or AblationConfig()
    examples = list(dataset)
    if not examples:
        raise CausalError("cannot ablate on an empty dataset")
    rank = None
    if isinstance(cfg.heads, str) and cfg.heads.split(":")[0].strip() in ("top", "bottom"):
        rank = ranking_array(ranking, model)
    heads = parse_heads(cfg.heads, model.n_layers, model.n_heads, ranking=rank)
    fmt = PromptFormat.named(cfg.format)
    if cfg.mode != "zero" and reference is None:
        reference = collect_z_reference(model, examples, fmt, batch_size=cfg.batch_size, pool_size=cfg.pool_size, progress=progress)
    ablation = HeadAblation(tuple(heads), cfg.mode, reference, seed=cfg.seed, positions=cfg.positions)
    p0, d0, p1, d1 = _ablate_rows(model, examples, fmt, ablation, batch_size=cfg.batch_size, progress=progress)
    labels = example_labels(examples)
    common = dict(threshold=cfg.threshold, n_boot=cfg.n_boot, seed=cfg.seed, model=getattr(model, "name", ""),
                  dataset=str(getattr(dataset, "name", "")), format=fmt.label)
    before = result_from_predictions(example_ids(examples), labels, p0, d0, **common)
    after = result_from_predictions(example_ids(examples), labels, p1, d1, **common)
    return AblationResult(before, after, heads, cfg.mode, cfg.to_dict())


@over_examples(groups=by_batch_plan)
def _ablate_rows(
    model: LoadedModel, examples: Sequence[Any], fmt: PromptFormat, ablation: HeadAblation, *, batch_size: int, progress: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per example: ``p_yes`` and logit difference clean and ablated. Data-parallel in a process group
    (:mod:`nasa_lens.parallel`); a mean/resample reference is collected over all examples on every rank."""
    n = len(examples)
    p0, d0, p1, d1 = (np.full(n, np.nan) for _ in range(4))
    bar = tqdm(total=n, desc=f"ablate {len(ablation.heads)} heads ({ablation.mode})", disable=not progress, leave=False)
    for idx, batch in iter_batches(model, examples, fmt, batch_size):
        runner = runner_for(model, batch, ablation.positions)
        p0[idx], d0[idx] = p_yes_and_logit_diff(runner.clean)
        p1[idx], d1[idx] = p_yes_and_logit_diff(runner.pair(ablation.hooks(batch), ablation.first_layer))
        bar.update(len(idx))
    bar.close()
    return p0, d0, p1, d1


@dataclass
class AblationCurveResult:
    """Per-example outputs of every condition of an ablation curve, and the statistics table.

    ``outputs[key] = (p_yes, logit_diff)`` per example, keys ``"top/k=4"``, ``"bottom/k=4"``,
    ``"random/k=4/seed=1"``; ``heads[key]`` the ablated heads.
    """

    ids: list[str]
    labels: np.ndarray
    clean: tuple[np.ndarray, np.ndarray]
    outputs: dict[str, tuple[np.ndarray, np.ndarray]]
    heads: dict[str, list[Head]]
    config: dict[str, Any]
    table: pd.DataFrame
    model: str = ""
    dataset: str = ""
    seconds: float = float("nan")

    def to_dataframe(self) -> pd.DataFrame:
        """Long format, one row per (k, condition, seed, metric): ``value`` with its bootstrap ``ci_low`` /
        ``ci_high``, ``delta`` (vs the clean run) with ``delta_ci_low`` / ``delta_ci_high`` (paired), and
        ``p_value`` (top / bottom vs the random control; NaN elsewhere). ``condition`` is clean (k = 0),
        top, bottom, random (one row per seed) or random_mean (the seed average)."""
        return self.table.copy()

    def to_wide(self) -> pd.DataFrame:
        """One row per ablated head set: ``control, k, draw, <metric>...`` (control in none / top / bottom /
        random; ``draw`` the random seed), the layout of ``ablation.csv``."""
        t = self.table[self.table["condition"] != "random_mean"].copy()
        t["draw"] = t["seed"].fillna(-1).astype(int)
        wide = t.pivot(index=["condition", "k", "draw"], columns="metric", values="value").reset_index()
        wide.columns.name = None
        wide = wide.rename(columns={"condition": "control"})
        wide["control"] = wide["control"].replace({"clean": "none"})
        wide["draw"] = wide["draw"].where(wide["draw"] >= 0)
        order = {"none": 0, "top": 1, "bottom": 2, "random": 3}
        wide["_o"] = wide["control"].map(order)
        return wide.sort_values(["k", "_o", "draw"]).drop(columns="_o").reset_index(drop=True)

    def summary_table(self, metric: str = "yes_rate") -> pd.DataFrame:
        """Per k: the change in ``metric`` (with its 95% CI) for top / random (seed mean) / bottom, and the
        permutation p-value of top vs random."""
        t = self.table[self.table["metric"] == metric]
        rows = []
        for k in sorted(t.loc[t["k"] > 0, "k"].unique()):
            row: dict[str, Any] = {"k": int(k)}
            for cond in ("top", "random_mean", "bottom"):
                r = t[(t["k"] == k) & (t["condition"] == cond)]
                if len(r):
                    r = r.iloc[0]
                    row[f"{cond}_delta"] = r["delta"]
                    row[f"{cond}_ci"] = f"[{r['delta_ci_low']:+.3f}, {r['delta_ci_high']:+.3f}]"
            top = t[(t["k"] == k) & (t["condition"] == "top")]
            row["p_top_vs_random"] = float(top["p_value"].iloc[0]) if len(top) else float("nan")
            rows.append(row)
        return pd.DataFrame(rows)

    def save(self, out_dir: str | Path) -> Path:
        """Write ``curve.csv`` (long), ``ablation.csv`` (wide, :meth:`to_wide`), ``curve_examples.npz`` and
        ``curve.json``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "curve.csv") as tmp:
            self.table.to_csv(tmp, index=False)
        with atomic_path(out / ABLATION_FILE) as tmp:
            self.to_wide().to_csv(tmp, index=False)
        keys = list(self.outputs)
        with atomic_path(out / "curve_examples.npz") as tmp, open(tmp, "wb") as f:
            np.savez(
                f,
                labels=self.labels,
                clean=np.stack(self.clean),
                outputs=np.stack([np.stack(self.outputs[k]) for k in keys]) if keys else np.zeros((0, 2, len(self.ids))),
            )
        write_json(out / "curve.json", {
            "ids": self.ids, "keys": keys, "heads": {k: [list(h) for h in v] for k, v in self.heads.items()},
            "config": self.config, "model": self.model, "dataset": self.dataset, "seconds": self.seconds,
        })
        return out

    @classmethod
    def load(cls, out_dir: str | Path) -> AblationCurveResult:
        out = Path(out_dir)
        for name in ("curve.csv", "curve.json", "curve_examples.npz"):
            if not (out / name).is_file():
                raise FileNotFoundError(f"{out / name} not found: not an ablation-curve folder (AblationCurveResult.save)")
        meta = read_json(out / "curve.json")
        with np.load(out / "curve_examples.npz") as z:
            labels, clean, outputs = z["labels"], z["clean"], z["outputs"]
        return cls(
            ids=meta["ids"], labels=labels, clean=(clean[0], clean[1]),
            outputs={k: (outputs[i, 0], outputs[i, 1]) for i, k in enumerate(meta["keys"])},
            heads={k: [tuple(h) for h in v] for k, v in meta["heads"].items()},
            config=meta["config"], table=pd.read_csv(out / "curve.csv", keep_default_na=True).assign(
                heads=lambda t: t["heads"].fillna("")), model=meta.get("model", ""),
            dataset=meta.get("dataset", ""), seconds=float(meta.get("seconds") or float("nan")),
        )


def _curve_conditions(rank: np.ndarray, cfg: AblationCurveConfig, n_layers: int, n_heads: int) -> list[tuple[str, int, int, list[Head]]]:
    """``(condition, k, seed, heads)`` for every ablated head set (seed -1 for top / bottom)."""
    top_all = ranked_heads(rank, descending=True)
    bottom_all = ranked_heads(rank, descending=False)
    total = n_layers * n_heads
    out = []
    for k in cfg.ks:
        if k > total:
            raise CausalError(f"k={k} is more than the model's {total} heads")
        out.append(("top", k, -1, top_all[:k]))
        out.append(("bottom", k, -1, bottom_all[:k]))
        exclude = top_all[:k] if cfg.exclude_top_from_random and k <= total - k else []
        for s in range(cfg.n_random_seeds):
            out.append(("random", k, s, random_heads(k, n_layers, n_heads, seed=cfg.seed * 10_007 + s, exclude=exclude)))
    return out


def _key(condition: str, k: int, seed: int) -> str:
    return f"{condition}/k={k}" if seed < 0 else f"{condition}/k={k}/seed={seed}"


def ablation_curve(
    model: LoadedModel,
    dataset: Sequence[Any],
    ranking: Any,
    ks: Sequence[int] = (1, 2, 4, 8, 16),
    mode: str = "zero",
    n_random_seeds: int | None = None,
    *,
    config: AblationCurveConfig | None = None,
    fmt: PromptFormat | str | None = None,
    reference: ZReference | None = None,
    progress: bool = True,
    n_random: int | None = None,
    **options: Any,
) -> AblationCurveResult:
    """Ablate the top-k NAS heads for each k, beside k random heads (several seeds) and the k lowest-NAS heads.

    ``ranking``: a NASResult or a ``[layer, head]`` mean-NAS array. Either pass ``config`` or the fields as
    keywords (``ks``, ``mode``, ``n_random_seeds`` (alias ``n_random``), and ``options`` such as ``n_boot``,
    ``seed``, ``batch_size``, ``threshold``). ``fmt`` overrides ``config.format``.

    All conditions run on the same batches: per batch one clean forward (caching the residual stream, and for
    ``positions="after"`` the prefix keys/values), then one run per head set from the set's first layer, of
    every column or (``after`` / ``last``) of the suffix columns only
    (:class:`~nasa_lens.causal.suffix.SuffixRunner`).
    """
    if config is None:
        n_seeds = n_random_seeds if n_random_seeds is not None else (n_random if n_random is not None else 3)
        config = AblationCurveConfig(ks=tuple(ks), mode=mode, n_random_seeds=n_seeds, **options)
    elif options:
        raise CausalError(f"pass either config or keyword options, not both (got {sorted(options)})")
    cfg = config
    rank = ranking_array(ranking, model)
    fmt_ = PromptFormat.of(fmt if fmt is not None else cfg.format)
    examples = list(dataset)
    if not examples:
        raise CausalError("cannot run an ablation curve on an empty dataset")
    labels = example_labels(examples)
    if (labels < 0).any():
        raise CausalError("every example needs a gold label ('yes' or 'no') for the ablation curve")
    conds = _curve_conditions(rank, cfg, model.n_layers, model.n_heads)
    t0 = time.perf_counter()
    if cfg.mode != "zero" and reference is None:
        reference = collect_z_reference(model, examples, fmt_, batch_size=cfg.batch_size, pool_size=cfg.pool_size, progress=progress)
    ablations = {_key(c, k, s): HeadAblation(tuple(h), cfg.mode, reference, seed=cfg.seed, positions=cfg.positions)
                 for c, k, s, h in conds}
    n = len(examples)
    clean = (np.full(n, np.nan), np.full(n, np.nan))
    outputs = {key: (np.full(n, np.nan), np.full(n, np.nan)) for key in ablations}
    bar = tqdm(total=n * (1 + len(ablations)), desc=f"ablation curve ({cfg.mode})", disable=not progress)
    for idx, batch in iter_batches(model, examples, fmt_, cfg.batch_size):
        runner = runner_for(model, batch, cfg.positions)
        clean[0][idx], clean[1][idx] = p_yes_and_logit_diff(runner.clean)
        bar.update(len(idx))
        for key, ab in ablations.items():
            p, d = p_yes_and_logit_diff(runner.pair(ab.hooks(batch), ab.first_layer))
            outputs[key][0][idx], outputs[key][1][idx] = p, d
            bar.update(len(idx))
    bar.close()
    seconds = time.perf_counter() - t0
    heads = {_key(c, k, s): list(h) for c, k, s, h in conds}
    table = _curve_table(labels, clean, outputs, heads, conds, cfg)
    return AblationCurveResult(
        ids=example_ids(examples), labels=labels, clean=clean, outputs=outputs, heads=heads, config=cfg.to_dict(),
        table=table, model=getattr(model, "name", ""), dataset=str(getattr(dataset, "name", "")), seconds=seconds,
    )


def _curve_table(
    labels: np.ndarray,
    clean: tuple[np.ndarray, np.ndarray],
    outputs: dict[str, tuple[np.ndarray, np.ndarray]],
    heads: dict[str, list[Head]],
    conds: list[tuple[str, int, int, list[Head]]],
    cfg: AblationCurveConfig,
) -> pd.DataFrame:
    n = len(labels)
    thr = cfg.threshold
    rng = np.random.default_rng(cfg.seed)
    idx = rng.integers(0, n, (cfg.n_boot, n))
    point = lambda p, d: bias_metrics(labels, p, thr, d)  # noqa: E731 - the one metric definition
    boot = lambda p, d: vector_metrics(labels[idx], p[idx], d[idx], thr)  # noqa: E731
    clean_point, clean_boot = point(*clean), boot(*clean)
    rows: list[dict[str, Any]] = []

    def add(k: int, condition: str, seed: float, head_str: str, value: dict[str, float], samples: dict[str, np.ndarray],
            p_values: dict[str, float] | None = None) -> None:
        for m in cfg.metrics:
            lo, hi = percentile_interval(samples[m])
            dlo, dhi = percentile_interval(samples[m] - clean_boot[m])
            rows.append({
                "k": k, "condition": condition, "seed": seed, "metric": m, "value": value[m], "ci_low": lo, "ci_high": hi,
                "delta": value[m] - clean_point[m], "delta_ci_low": dlo, "delta_ci_high": dhi,
                "p_value": (p_values or {}).get(m, float("nan")), "n": n, "heads": head_str,
            })

    add(0, "clean", float("nan"), "", clean_point, clean_boot)
    point_cache = {key: point(*outputs[key]) for key in outputs}
    boot_cache = {key: boot(*outputs[key]) for key in outputs}
    for k in cfg.ks:
        rand_keys = [_key("random", k, s) for s in range(cfg.n_random_seeds)]
        for cond in ("top", "bottom"):
            key = _key(cond, k, -1)
            pv = _perm_pvalues(labels, outputs[key], [outputs[r] for r in rand_keys], cfg, rng) if rand_keys else None
            add(k, cond, float("nan"), ",".join(format_head(h) for h in heads[key]), point_cache[key], boot_cache[key], pv)
        for s, key in enumerate(rand_keys):
            add(k, "random", float(s), ",".join(format_head(h) for h in heads[key]), point_cache[key], boot_cache[key])
        if rand_keys:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN metric (e.g. precision with no "yes")
                mean_point = {m: float(np.nanmean([point_cache[r][m] for r in rand_keys])) for m in cfg.metrics}
                mean_boot = {m: np.nanmean(np.stack([boot_cache[r][m] for r in rand_keys]), axis=0) for m in cfg.metrics}
            add(k, "random_mean", float("nan"), "", mean_point, mean_boot)
    return pd.DataFrame(rows)


def _perm_pvalues(
    labels: np.ndarray,
    tested: tuple[np.ndarray, np.ndarray],
    randoms: list[tuple[np.ndarray, np.ndarray]],
    cfg: AblationCurveConfig,
    rng: np.random.Generator,
) -> dict[str, float]:
    """Two-sided permutation p-value of ``T = metric(tested) - mean_s metric(random_s)``.

    Null: per example, the outputs under the tested head set and under the random head sets are
    exchangeable (the tested heads are no more special than random ones). Each draw permutes, per example,
    the example's outputs among the 1 + S conditions; ``p = (1 + #{|T*| >= |T|}) / (1 + #valid draws)``.
    """
    P = np.stack([tested[0]] + [r[0] for r in randoms])  # [C, n]
    D = np.stack([tested[1]] + [r[1] for r in randoms])
    C, n = P.shape
    perm = np.argsort(rng.random((cfg.n_perm, C, n)), axis=1)
    cols = np.arange(n)[None, None, :]
    Pp, Dp = P[perm, cols], D[perm, cols]  # [draw, C, n]
    obs = vector_metrics(labels[None], P, D, cfg.threshold)
    null = vector_metrics(labels[None, None], Pp, Dp, cfg.threshold)
    out = {}
    for m in cfg.metrics:
        t_obs = obs[m][0] - np.mean(obs[m][1:])
        t_null = null[m][:, 0] - null[m][:, 1:].mean(1)
        valid = ~np.isnan(t_null)
        if np.isnan(t_obs) or not valid.any():
            out[m] = float("nan")
            continue
        tol = 1e-12 + abs(t_obs) * 1e-9
        hits = int((np.abs(t_null[valid]) >= abs(t_obs) - tol).sum())
        out[m] = (1 + hits) / (1 + int(valid.sum()))
    return out
