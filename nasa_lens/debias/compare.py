"""Every fix side by side, the one comparison of nasa-lens: fit each on the same training examples, apply it,
evaluate it on every test set, write one table.

:func:`compare_fixes` returns a :class:`ComparisonResult` whose ``frame`` (``comparison.csv``, columns
:func:`comparison_columns`) has one row per (method, dataset) with ``n``, every metric of
:data:`nasa_lens.evaluate.METRIC_KEYS` and its 95% bootstrap interval (``_lo``/``_hi``), ``params`` (numbers
the fix fitted), ``fit_seconds``, ``threshold``, ``heads``, and the checks: ``lm_loss`` (mean next-token loss
on :data:`nasa_lens.ability.NEUTRAL_TEXT` with the fix applied, 95% normal interval over the 20 texts),
``arith_accuracy`` (:func:`nasa_lens.ability.arithmetic_accuracy`) and ``nas_heads_before`` /
``nas_heads_after`` (mean NAS of the fix's heads on the first ``nas_limit`` examples of a test set, without and
with the fix), each NaN where not measured. :meth:`ComparisonResult.to_dataframe` is the same numbers in long
format (``method, dataset, metric, value, ci_low, ci_high, n_params, seconds``).

The ``base`` rows are exactly :func:`nasa_lens.evaluate.evaluate` on the same examples (same batch size,
seed and bootstrap), i.e. what ``nasa-lens eval`` reports.

:func:`compare_methods` is the NASA-vs-baselines preset (``docs/finetuning.md``): ``nasa``, ``random`` and
``all`` trained with one :class:`~nasa_lens.finetune.NASAConfig` and step budget, ``base`` and ``threshold``,
with every check measured.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from nasa_lens.debias.base import METHODS, DebiasError, DebiasMethod, make_method
from nasa_lens.evaluate import METRIC_KEYS
from nasa_lens.io import atomic_path, read_json, write_csv_gz, write_json, write_text
from nasa_lens.vocab import COMPARISON_FILE, COMPARISON_META_FILE, COMPARISON_PREDICTIONS_FILE, DEBIAS_METHODS, FIXES_DIR, REPORT_FILE

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.finetune import NASAConfig, TrainResult
    from nasa_lens.models import LoadedModel

__all__ = ["COMPARE_METRICS", "DEFAULT_METHODS", "BASELINE_METHODS", "CHECKS", "LONG_COLUMNS", "ComparisonResult",
           "compare_fixes", "compare_methods", "comparison_columns", "build_fixes", "method_options", "long_frame",
           "baseline_fix", "spec_size"]

logger = logging.getLogger(__name__)

COMPARE_METRICS = ("accuracy", "precision", "recall", "pr_gap", "yes_rate", "auroc", "ece")
"""The metrics of the report's tables and the first columns of ``comparison.csv``."""
MORE_METRICS = tuple(k for k in METRIC_KEYS if k not in COMPARE_METRICS)
"""The other metrics of :data:`~nasa_lens.evaluate.METRIC_KEYS`, in columns after the checks."""
CHECKS = {"lm_loss": "neutral-text", "arith_accuracy": "arith-next-token", "nas_heads_before": None, "nas_heads_after": None}
"""The checks beside the metrics: name -> the dataset they are tabled under in long format (None: the test set
they were measured on). ``lm_loss`` and ``arith_accuracy`` are per fix, the NAS of its heads per test set."""
DEFAULT_METHODS = ("base", "threshold", "knockout", "mask", "steer", "nasa", "random")
BASELINE_METHODS = ("base", "threshold", "nasa", "random", "all")
"""The methods of :func:`compare_methods`: NASA against its baselines."""
LONG_COLUMNS = ["method", "dataset", "metric", "value", "ci_low", "ci_high", "n_params", "seconds"]
"""The columns of :meth:`ComparisonResult.to_dataframe` (one row per method, dataset and metric)."""


def comparison_columns() -> list[str]:
    """The columns of ``comparison.csv`` (:attr:`ComparisonResult.frame`), in order."""
    cols = ["method", "dataset", "n", *COMPARE_METRICS, "params", "fit_seconds"]
    cols += [f"{m}_{s}" for m in COMPARE_METRICS for s in ("lo", "hi")]
    cols += ["lm_loss", "lm_loss_lo", "lm_loss_hi", "threshold", "heads"]
    cols += [*MORE_METRICS, *(f"{m}_{s}" for m in MORE_METRICS for s in ("lo", "hi"))]
    return cols + [f"{c}{s}" for c in CHECKS if c != "lm_loss" for s in ("", "_lo", "_hi")]


def _present(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def long_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``comparison.csv``'s table in long format (:data:`LONG_COLUMNS`): per method, every metric of every test
    set, then the per-fix checks measured (``lm_loss`` as dataset ``neutral-text``, ``arith_accuracy`` as
    ``arith-next-token``), then the NAS of its heads per test set where measured."""
    rows: list[dict[str, Any]] = []
    for method, part in frame.groupby("method", sort=False):
        records = part.to_dict("records")

        def row(r: dict[str, Any], dataset: str, k: str) -> dict[str, Any]:
            return {"method": method, "dataset": dataset, "metric": k, "value": r.get(k, math.nan),
                    "ci_low": r.get(f"{k}_lo", math.nan), "ci_high": r.get(f"{k}_hi", math.nan),
                    "n_params": r.get("params"), "seconds": r.get("fit_seconds")}

        for r in records:
            rows.extend(row(r, r["dataset"], k) for k in METRIC_KEYS)
        for k, dataset in CHECKS.items():
            if dataset is not None and _present(records[0].get(k)):
                rows.append(row(records[0], dataset, k))
        for r in records:
            rows.extend(row(r, r["dataset"], k) for k, dataset in CHECKS.items() if dataset is None and _present(r.get(k)))
    return pd.DataFrame(rows, columns=LONG_COLUMNS)


@dataclass
class ComparisonResult:
    """The comparison table (``frame``, columns :func:`comparison_columns`, the shape of ``comparison.csv``),
    the fitted fixes and facts (``meta``: model, methods in table order, heads, thresholds, settings...)."""

    frame: pd.DataFrame
    fixes: dict[str, DebiasMethod] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    predictions: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PREDICTION_COLUMNS))

    def to_dataframe(self) -> pd.DataFrame:
        """Long format: one row per (method, dataset, metric), :data:`LONG_COLUMNS` (see :func:`long_frame`)."""
        return long_frame(self.frame)

    def paired(self, a: str, b: str, dataset: str, metric: str = "accuracy", *, n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
        """``metric`` of fix ``a`` minus fix ``b`` on the same questions of ``dataset``, with a paired bootstrap
        (:func:`nasa_lens.evaluate.paired_difference`; each fix at its own threshold)."""
        return paired_from_predictions(self.predictions, a, b, dataset, metric, n_boot=n_boot, seed=seed)

    @property
    def thresholds(self) -> dict[str, float]:
        """The fitted decision thresholds of the fixes that fit one (``threshold``), by method."""
        return dict(self.meta.get("thresholds", {}))

    @property
    def train_results(self) -> dict[str, TrainResult]:
        """The :class:`~nasa_lens.finetune.TrainResult` of every trained fix of this run, by method."""
        return {n: f.train_result for n, f in self.fixes.items() if getattr(f, "train_result", None) is not None}

    def table(self, metrics: Sequence[str] = ("pr_gap", "recall", "accuracy", "auroc"), *, with_ci: bool = False) -> pd.DataFrame:
        """Wide, for reading: rows ``(dataset, method)``, columns the metrics (and ``n_params``, ``seconds``)."""
        long = self.to_dataframe()
        df = long[long.metric.isin(metrics)].copy()
        if with_ci:
            df["value"] = [f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for v, lo, hi in zip(df.value, df.ci_low, df.ci_high)]
        wide = df.pivot_table(index=["dataset", "method"], columns="metric", values="value", aggfunc="first")
        wide = wide[[m for m in metrics if m in wide.columns]]
        extra = long.groupby("method")[["n_params", "seconds"]].first()
        wide = wide.join(extra, on="method")
        order = {m: i for i, m in enumerate(self.meta.get("methods", []))}
        return wide.reset_index().sort_values(["dataset", "method"], key=lambda s: s.map(order) if s.name == "method" else s).reset_index(drop=True)

    def save(self, out_dir: str | Path) -> Path:
        """``comparison.csv``, ``comparison.json`` (facts) and every fitted fix under ``methods/NAME``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / COMPARISON_FILE) as tmp:
            self.frame.to_csv(tmp, index=False)
        write_json(out / COMPARISON_META_FILE, self.meta)
        if len(self.predictions):
            write_csv_gz(out / COMPARISON_PREDICTIONS_FILE, self.predictions)
        for name, fix in self.fixes.items():
            fix.save(out / FIXES_DIR / name)
        return out

    @classmethod
    def load(cls, out_dir: str | Path) -> ComparisonResult:
        """The table and facts :meth:`save` wrote (the fixes: :func:`~nasa_lens.debias.load_method` on ``methods/NAME``)."""
        out = Path(out_dir)
        if not (out / COMPARISON_FILE).is_file():
            raise DebiasError(f"{out} holds no {COMPARISON_FILE}")
        meta = read_json(out / COMPARISON_META_FILE) if (out / COMPARISON_META_FILE).is_file() else {}
        frame = pd.read_csv(out / COMPARISON_FILE, dtype={"method": str, "dataset": str, "heads": str})
        pred = out / COMPARISON_PREDICTIONS_FILE
        predictions = pd.read_csv(pred, dtype={"id": str}) if pred.is_file() else pd.DataFrame(columns=PREDICTION_COLUMNS)
        return cls(frame=frame, meta=meta, predictions=predictions)

    def report(self, command: str = "") -> str:
        """A short markdown report: the setup, one table per test set, and the fitted heads."""
        m = self.meta
        lines = ["# De-biasing fixes side by side", ""]
        if command:
            lines += ["```", command, "```", ""]
        lines += [f"Model `{m.get('model')}`; trained on {', '.join(m.get('train', []))} "
                  f"({m.get('n_train')} examples, training splits); tested on {', '.join(m.get('test', {}))}.", ""]
        for warn in m.get("warnings", []):
            lines += [f"> {warn}", ""]
        fmt = lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else (f"{v:.3f}" if isinstance(v, float) else str(v))  # noqa: E731
        for ds, part in self.frame.groupby("dataset", sort=False):
            lines += [f"## {ds} (n = {int(part.n.iloc[0])})", "",
                      "| method | accuracy | pr_gap | yes_rate | recall | AUROC | ECE | LM loss | params | fit s |",
                      "|---|---|---|---|---|---|---|---|---|---|"]
            for r in part.itertuples(index=False):
                ci = lambda k: "n/a" if not fmt(getattr(r, k)) else f"{fmt(getattr(r, k))} [{fmt(getattr(r, k + '_lo'))}, {fmt(getattr(r, k + '_hi'))}]"  # noqa: E731
                lines.append(f"| {r.method} | {ci('accuracy')} | {ci('pr_gap')} | {fmt(r.yes_rate)} | {fmt(r.recall)} | "
                             f"{fmt(r.auroc)} | {fmt(r.ece)} | {fmt(r.lm_loss)} | {int(r.params):,} | {r.fit_seconds:.0f} |")
            lines.append("")
        heads = {k: v for k, v in m.get("heads", {}).items() if v}
        if heads:
            lines += ["## Heads chosen on the training split", ""]
            lines += [f"- `{k}`: {', '.join(v)}" + (f" ({m['settings'][k]})" if m.get("settings", {}).get(k) else "") for k, v in heads.items()]
            lines.append("")
        return "\n".join(lines)

    def write_report(self, out_dir: str | Path, command: str = "") -> Path:
        return write_text(Path(out_dir) / REPORT_FILE, self.report(command))


def method_options(*, k: int = 8, fit_limit: int = 64, steps: int = 60, seed: int = 0, format: str = "yes-no",
                   batch_size: int = 16) -> dict[str, dict[str, Any]]:
    """Per-fix constructor options from a few shared settings (what ``nasa-lens compare`` and the study use):
    ``k`` heads for steer/nasa/random (knockout and mask keep their grid of 2-16), ``fit_limit`` training
    examples to choose settings on (at least 64 for the threshold), ``steps`` for the fine-tunes."""
    common = {"seed": seed, "fit_limit": fit_limit, "format": format, "batch_size": batch_size}
    opts: dict[str, dict[str, Any]] = {"threshold": {"fit_limit": max(fit_limit, 64), "format": format, "batch_size": batch_size}}
    for m in ("knockout", "mask", "random-knockout", "random-mask", "steer", "random-steer"):
        opts[m] = {**common, "k": k}
    for m in ("nasa", "random"):
        opts[m] = {**common, "k": k, "steps": steps}
    return opts


def build_fixes(methods: Sequence[str | DebiasMethod], options: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, DebiasMethod]:
    """``{name: unfitted fix}`` from registry names (with per-method ``options``) or ready objects."""
    out: dict[str, DebiasMethod] = {}
    options = options or {}
    unknown = [m for m in methods if isinstance(m, str) and m not in METHODS]
    if unknown:
        raise DebiasError(f"unknown de-biasing method(s) {', '.join(map(repr, unknown))}; known: {', '.join(METHODS)}")
    for m in methods:
        fix = make_method(m, **dict(options.get(m, {}))) if isinstance(m, str) else m
        if fix.name in out:
            raise DebiasError(f"method {fix.name!r} named twice")
        out[fix.name] = fix
    return out


PREDICTION_COLUMNS = ("method", "dataset", "id", "label", "p_yes", "logit_diff", "threshold")
"""The columns of ``comparison_predictions.csv.gz``: one row per fix, test set and question (label 1 = yes)."""


def prediction_rows(method: str, dataset: str, res: Any, threshold: float) -> pd.DataFrame:
    """One fix's per-question results on one test set, in :data:`PREDICTION_COLUMNS`."""
    return pd.DataFrame({"method": method, "dataset": dataset, "id": list(res.ids), "label": np.asarray(res.labels, int),
                         "p_yes": np.asarray(res.p_yes, float), "logit_diff": np.asarray(res.logit_diff, float),
                         "threshold": float(threshold)}, columns=list(PREDICTION_COLUMNS))


def paired_frames(a: pd.DataFrame, b: pd.DataFrame, metric: str = "accuracy", *, n_boot: int = 1000, seed: int = 0,
                  what: str = "the two sets of predictions") -> dict[str, float]:
    """Predictions ``a`` minus predictions ``b`` (two selections of :data:`PREDICTION_COLUMNS` rows) on the
    questions both hold, matched by id, each at its own threshold (:func:`nasa_lens.evaluate.paired_difference`);
    ``what`` names the two in the error when they share no question."""
    from nasa_lens.evaluate import paired_difference

    a, b = (rows.drop_duplicates("id").set_index("id") for rows in (a, b))
    ids = a.index.intersection(b.index, sort=False)
    if not len(ids):
        raise DebiasError(f"{what} share no question")
    a, b = a.loc[ids], b.loc[ids]
    return paired_difference(a["label"].to_numpy(int), a["p_yes"].to_numpy(float), b["p_yes"].to_numpy(float),
                             threshold_a=float(a["threshold"].iloc[0]), threshold_b=float(b["threshold"].iloc[0]),
                             metric=metric, n_boot=n_boot, seed=seed)


def paired_from_predictions(predictions: pd.DataFrame, a: str, b: str, dataset: str, metric: str = "accuracy", *,
                            n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """Fix ``a`` minus fix ``b`` on ``dataset`` from per-question predictions (:data:`PREDICTION_COLUMNS`):
    the questions both answered, matched by id, each fix at its own threshold (:func:`paired_frames`)."""
    sides = []
    for m in (a, b):
        rows = predictions[(predictions["method"] == m) & (predictions["dataset"] == dataset)]
        if rows.empty:
            raise DebiasError(f"no predictions of {m!r} on {dataset!r} (have: {sorted(set(predictions['method']))})")
        sides.append(rows)
    return paired_frames(*sides, metric, n_boot=n_boot, seed=seed, what=f"{a!r} and {b!r} on {dataset!r}")


def _mean_ci(values: np.ndarray | None) -> tuple[float, float, float]:
    """Mean and 95% normal interval (NaN when not measured)."""
    if values is None or not len(values):
        return math.nan, math.nan, math.nan
    v = np.asarray(values, float)
    mean = float(v.mean())
    half = 1.96 * float(v.std(ddof=1)) / math.sqrt(len(v)) if len(v) > 1 else math.nan
    return mean, mean - half, mean + half


def _row(method: str, dataset: str, res: Any, fix: DebiasMethod, checks: Mapping[str, np.ndarray | None]) -> dict[str, Any]:
    from nasa_lens.heads import format_heads

    row: dict[str, Any] = {"method": method, "dataset": dataset, "n": res.n}
    row.update({k: res.metrics[k] for k in COMPARE_METRICS})
    row.update({"params": fix.n_params, "fit_seconds": fix.fit_seconds})
    for k in METRIC_KEYS:
        row[k] = res.metrics[k]
        row[f"{k}_lo"], row[f"{k}_hi"] = res.ci[k]
    for k in CHECKS:
        row[k], row[f"{k}_lo"], row[f"{k}_hi"] = _mean_ci(checks.get(k))
    row.update({"threshold": fix.threshold, "heads": format_heads(fix.heads)})
    return {c: row.get(c, math.nan) for c in comparison_columns()}


def compare_fixes(
    model: LoadedModel,
    train: Sequence[Any],
    test_sets: Mapping[str, Sequence[Any]],
    methods: Sequence[str | DebiasMethod] = DEFAULT_METHODS,
    *,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    val: Sequence[Any] | None = None,
    format: str = "yes-no",
    batch_size: int = 16,
    n_boot: int = 1000,
    seed: int = 0,
    lm_loss: bool = True,
    arithmetic: bool = False,
    nas_sets: Sequence[str] = (),
    nas_limit: int = 48,
    nas_positions: str = "after",
    progress: bool = False,
    partial: str | Path | None = None,
) -> ComparisonResult:
    """Fit every fix on ``train``, apply it and evaluate it on every test set.

    ``methods``: registry names or fix objects (see :mod:`nasa_lens.debias.methods`), each fitted on the same
    ``train`` list (and ``val``, the validation examples of the fixes that train), in this order. A ``random-X``
    control fitted after ``X`` (``random`` after ``nasa``) gets as many heads as ``X`` chose (``k``). Fixes
    that do not change the model (``base``, ``threshold``) reuse the clean ``p_yes`` at their threshold.
    Checks: ``lm_loss`` and ``arithmetic`` (general ability with the fix applied), and the NAS of the fix's
    heads without and with it on the first ``nas_limit`` examples of each of ``nas_sets``.
    ``partial``: a CSV rewritten (atomically) after every method with the rows so far, so a long run that is
    stopped keeps what it measured.
    """
    from nasa_lens.ability import arithmetic_accuracy
    from nasa_lens.ability import lm_loss as lm_loss_fn
    from nasa_lens.evaluate import evaluate, result_from_predictions
    from nasa_lens.heads import format_head
    from nasa_lens.nas import nas_of_heads
    from nasa_lens.prompts import PromptFormat

    fixes = build_fixes(methods, options)
    train = list(train)
    if not train:
        raise DebiasError("no training examples")
    if not test_sets:
        raise DebiasError("no test set")
    unknown = [name for name in nas_sets if name not in test_sets]
    if unknown:
        raise DebiasError(f"nas_sets names no test set: {', '.join(map(repr, unknown))}")
    fmt = PromptFormat.named(format)
    rows: list[dict[str, Any]] = []
    predictions: list[pd.DataFrame] = []
    clean: dict[str, Any] = {}
    clean_checks: dict[str, np.ndarray | None] = {}

    def general() -> dict[str, np.ndarray | None]:
        """The per-fix checks with whatever is applied now."""
        return {"lm_loss": lm_loss_fn(model) if lm_loss else None,
                "arith_accuracy": arithmetic_accuracy(model) if arithmetic else None}

    def clean_results() -> dict[str, Any]:
        if not clean:
            for name, ds in test_sets.items():
                clean[name] = evaluate(model, ds, fmt, batch_size=batch_size, n_boot=n_boot, seed=seed, progress=progress)
            clean_checks.update(general())
        return clean

    def nas(fix: DebiasMethod) -> dict[str, np.ndarray]:
        return {name: nas_of_heads(model, list(test_sets[name])[:nas_limit], fix.heads, fmt, positions=nas_positions,
                                   batch_size=batch_size) for name in nas_sets} if fix.heads else {}

    def write_partial() -> None:
        if partial is not None:
            with atomic_path(partial) as tmp:
                pd.DataFrame(rows, columns=comparison_columns()).to_csv(tmp, index=False)

    overall = tqdm(total=len(fixes), desc="compare", unit="fix", disable=not progress)  # fixes fitted and evaluated
    for name, fix in fixes.items():
        overall.set_postfix_str(name)
        twin = fixes.get(name.removeprefix("random-")) if name.startswith("random-") else fixes.get("nasa") if name == "random" else None
        if twin is not None and twin.fitted and twin.heads and hasattr(fix, "k"):
            fix.k, fix.k_grid = len(twin.heads), None  # the control gets as many heads as its twin chose
        logger.info("compare: fitting %s", name)
        fix.fit(model, train, val=val)
        if not fix.changes_model:
            for ds_name, res in clean_results().items():
                r = result_from_predictions(res.ids, res.labels, res.p_yes, res.logit_diff, threshold=fix.threshold, n_boot=n_boot,
                                            seed=seed, model=res.model, dataset=res.dataset, format=res.format)
                rows.append(_row(name, ds_name, r, fix, clean_checks))
                predictions.append(prediction_rows(name, ds_name, r, fix.threshold))
            write_partial()
            overall.update()
            continue
        before = nas(fix)
        with fix.apply(model):
            checks = general()
            results = {ds_name: evaluate(model, ds, fmt, batch_size=batch_size, threshold=fix.threshold, n_boot=n_boot, seed=seed,
                                         progress=progress) for ds_name, ds in test_sets.items()}
            after = nas(fix)
        for ds_name, res in results.items():
            per_set = {"nas_heads_before": before.get(ds_name), "nas_heads_after": after.get(ds_name)}
            rows.append(_row(name, ds_name, res, fix, {**checks, **per_set}))
            predictions.append(prediction_rows(name, ds_name, res, fix.threshold))
        logger.info("compare: %s done", name)
        write_partial()
        overall.update()
    overall.close()
    frame = pd.DataFrame(rows, columns=comparison_columns())
    trained = {k: f.train_result for k, f in fixes.items() if getattr(f, "train_result", None) is not None}
    meta = {
        "model": model.name,
        "methods": list(fixes),
        "n_train": len(train),
        **({"n_val": len(val)} if val is not None else {}),
        "test": {k: len(v) for k, v in test_sets.items()},
        "heads": {k: [format_head(h) for h in f.heads] for k, f in fixes.items()},
        "key_groups": {k: [format_head(g) for g in r.key_groups] for k, r in trained.items()},
        "settings": {k: _settings(f) for k, f in fixes.items()},
        "thresholds": {k: f.threshold for k, f in fixes.items() if f.fits_threshold},
        "format": format,
        "seed": seed,
        "n_boot": n_boot,
    }
    pred = pd.concat(predictions, ignore_index=True) if predictions else pd.DataFrame(columns=PREDICTION_COLUMNS)
    return ComparisonResult(frame=frame, fixes=fixes, meta=meta, predictions=pred)


def baseline_fix(name: str, config: NASAConfig, *, ranking: np.ndarray | None = None, random_seed: int = 0,
                 all_train_k: bool = True, threshold_limit: int | None = 128, n_train: int = 0, k: int = 1) -> DebiasMethod:
    """The fix ``name`` as :func:`compare_methods` runs it: ``nasa`` / ``random`` / ``all`` trained with
    ``config`` (``random``: ``random:k:random_seed``; ``all``: key rows too when ``all_train_k``), ``threshold``
    fitted on the first ``threshold_limit`` training examples (None: all ``n_train``), any other registered
    fix with :func:`method_options` from the config."""
    shared = {"format": config.format, "batch_size": config.eval_batch_size}
    if name in ("nasa", "random", "all"):
        kw: dict[str, Any] = {"config": config, **shared, "k": k}
        if name == "nasa":
            kw["ranking"] = ranking
        if name == "random":
            kw["seed"] = random_seed
        if name == "all":
            kw["train_k"] = all_train_k
        return make_method(name, **kw)
    if name == "threshold":
        return make_method(name, fit_limit=threshold_limit or max(n_train, 1), **shared)
    opts = method_options(k=k, fit_limit=threshold_limit or max(n_train, 1), steps=config.steps, seed=config.seed, **shared)
    return make_method(name, **opts.get(name, {}))


def spec_size(spec: Any, n_layers: int, n_heads: int) -> int:
    """How many heads a head spec selects (``incremental`` starts from one head)."""
    if not isinstance(spec, str):
        return len(spec)
    kind, _, rest = spec.strip().partition(":")
    if kind in ("top", "bottom", "random"):
        return int(rest.split(":")[0])
    if kind == "all":
        return n_layers * n_heads
    if kind == "incremental":
        return 1
    return len([h for h in spec.split(",") if h.strip()])


def compare_methods(
    model: LoadedModel,
    train: Sequence[Any],
    eval_sets: Mapping[str, Sequence[Any]],
    config: NASAConfig | None = None,
    *,
    val: Sequence[Any] | None = None,
    methods: Sequence[str | DebiasMethod] = BASELINE_METHODS,
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
    """NASA against its baselines with the same data and step budget, every method evaluated everywhere:
    :func:`compare_fixes` with the fixes of :func:`baseline_fix` and every check.

    Args:
        model: the base model.
        train / val: training and validation examples (the same for every trained method).
        eval_sets: ``{name: examples}``: held-out splits of the training data and datasets never trained on.
        config: the NASA run; ``random`` uses the same config with as many random heads as ``nasa`` selected
            (``random:K:random_seed``), ``all`` every head (and their key rows when ``all_train_k``).
        methods: registry names (default :data:`BASELINE_METHODS`) or fix objects, run and tabled in the order
            of :data:`nasa_lens.vocab.DEBIAS_METHODS` (so ``nasa`` runs before ``random``), other names after.
        nas_sets: eval sets on which the NAS of each method's heads is measured before/after (default:
            all), on the first ``nas_limit`` examples.
        general: also measure the LM loss on :data:`~nasa_lens.ability.NEUTRAL_TEXT` and the arithmetic accuracy.
        n_boot: bootstrap resamples for the metric intervals.
        ranking: a ``[layer, head]`` mean-NAS array for ``nasa``'s ``top:K`` (else scanned on ``train``).
        threshold_limit: the ``threshold`` baseline is fitted on the first N training examples (None: all).
    """
    from nasa_lens.finetune import NASAConfig

    cfg = config or NASAConfig()
    train = list(train)
    if isinstance(methods, str):
        methods = [methods]
    unknown = [m for m in methods if isinstance(m, str) and m not in METHODS]
    if unknown:
        raise DebiasError(f"unknown de-biasing method(s) {', '.join(map(repr, unknown))}; known: {', '.join(METHODS)}")
    k = spec_size(cfg.heads, model.n_layers, model.n_heads)
    fixes: dict[str, DebiasMethod] = {}
    for m in methods:
        fix = baseline_fix(m, cfg, ranking=ranking, random_seed=random_seed, all_train_k=all_train_k,
                           threshold_limit=threshold_limit, n_train=len(train), k=k) if isinstance(m, str) else m
        if fix.name in fixes and (not isinstance(m, str) or not isinstance(fixes[fix.name], type(fix))):
            raise DebiasError(f"two different methods named {fix.name!r}")
        fixes.setdefault(fix.name, fix)
    rank = {name: i for i, name in enumerate(DEBIAS_METHODS)}
    ordered = sorted(fixes.values(), key=lambda f: rank.get(f.name, len(rank)))
    result = compare_fixes(model, train, eval_sets, ordered, val=val, format=cfg.format, batch_size=cfg.eval_batch_size,
                           n_boot=n_boot, seed=cfg.seed, lm_loss=general, arithmetic=general,
                           nas_sets=list(eval_sets) if nas_sets is None else list(nas_sets), nas_limit=nas_limit,
                           nas_positions=cfg.nas_positions, progress=progress)
    result.meta["config"] = cfg.to_dict()
    return result


def _settings(fix: DebiasMethod) -> str:
    if fix.name == "threshold":
        return f"threshold {fix.threshold:.4f}"
    if hasattr(fix, "alpha"):
        return f"alpha {fix.alpha:g}"
    if getattr(fix, "steps", None):
        return f"{fix.info.get('steps_done')} steps, kept step {fix.info.get('best_step')}"
    return ""
