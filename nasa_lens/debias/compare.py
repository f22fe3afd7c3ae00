"""Every fix side by side: fit each on the same training examples, apply it, evaluate it on every test set.

:func:`compare_fixes` returns a :class:`FixComparison` whose frame has one row per (method, dataset) with
``n, accuracy, precision, recall, pr_gap, yes_rate, auroc, ece`` and their 95% bootstrap interval
(``_lo``/``_hi``), ``params`` (numbers the fix fitted), ``fit_seconds`` and ``lm_loss`` (mean next-token
loss on :data:`nasa_lens.finetune.NEUTRAL_TEXT` with the fix applied, 95% normal interval over the 20 texts).
The ``base`` rows are exactly :func:`nasa_lens.evaluate.evaluate` on the same examples (same batch size,
seed and bootstrap), i.e. what ``nasa-lens eval`` reports.
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
from nasa_lens.io import atomic_path, read_json, write_json, write_text

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel

__all__ = ["COMPARE_METRICS", "DEFAULT_METHODS", "FixComparison", "compare_fixes", "comparison_columns", "build_fixes",
           "method_options"]

logger = logging.getLogger(__name__)

COMPARE_METRICS = ("accuracy", "precision", "recall", "pr_gap", "yes_rate", "auroc", "ece")
DEFAULT_METHODS = ("base", "threshold", "knockout", "mask", "steer", "nasa", "random")


def comparison_columns() -> list[str]:
    cols = ["method", "dataset", "n", *COMPARE_METRICS, "params", "fit_seconds"]
    cols += [f"{m}_{s}" for m in COMPARE_METRICS for s in ("lo", "hi")]
    return cols + ["lm_loss", "lm_loss_lo", "lm_loss_hi", "threshold", "heads"]


@dataclass
class FixComparison:
    """The comparison table (``frame``, columns :func:`comparison_columns`), the fitted fixes and facts."""

    frame: pd.DataFrame
    fixes: dict[str, DebiasMethod] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dataframe(self) -> pd.DataFrame:
        return self.frame.copy()

    def save(self, out_dir: str | Path) -> Path:
        """``comparison.csv``, ``comparison.json`` (facts) and every fitted fix under ``methods/NAME``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "comparison.csv") as tmp:
            self.frame.to_csv(tmp, index=False)
        write_json(out / "comparison.json", self.meta)
        for name, fix in self.fixes.items():
            fix.save(out / "methods" / name)
        return out

    @classmethod
    def load(cls, out_dir: str | Path) -> FixComparison:
        out = Path(out_dir)
        if not (out / "comparison.csv").is_file():
            raise DebiasError(f"{out} holds no comparison.csv")
        meta = read_json(out / "comparison.json") if (out / "comparison.json").is_file() else {}
        return cls(frame=pd.read_csv(out / "comparison.csv"), meta=meta)

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
        return write_text(Path(out_dir) / "report.md", self.report(command))


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


def _row(method: str, dataset: str, res: Any, fix: DebiasMethod, lm: np.ndarray | None) -> dict[str, Any]:
    from nasa_lens.heads import format_heads

    row: dict[str, Any] = {"method": method, "dataset": dataset, "n": res.n}
    row.update({k: res.metrics[k] for k in COMPARE_METRICS})
    row.update({"params": fix.n_params, "fit_seconds": fix.fit_seconds})
    for k in COMPARE_METRICS:
        row[f"{k}_lo"], row[f"{k}_hi"] = res.ci[k]
    if lm is not None and len(lm):
        mean = float(lm.mean())
        half = 1.96 * float(lm.std(ddof=1)) / math.sqrt(len(lm)) if len(lm) > 1 else math.nan
        row.update({"lm_loss": mean, "lm_loss_lo": mean - half, "lm_loss_hi": mean + half})
    else:
        row.update({"lm_loss": math.nan, "lm_loss_lo": math.nan, "lm_loss_hi": math.nan})
    row.update({"threshold": fix.threshold, "heads": format_heads(fix.heads)})
    return row


def compare_fixes(
    model: LoadedModel,
    train: Sequence[Any],
    test_sets: Mapping[str, Sequence[Any]],
    methods: Sequence[str | DebiasMethod] = DEFAULT_METHODS,
    *,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    format: str = "yes-no",
    batch_size: int = 16,
    n_boot: int = 1000,
    seed: int = 0,
    lm_loss: bool = True,
    progress: bool = False,
    partial: str | Path | None = None,
) -> FixComparison:
    """Fit every fix on ``train``, apply it and evaluate it on every test set.

    ``methods``: registry names or fix objects (see :mod:`nasa_lens.debias.methods`), each fitted on the same
    ``train`` list. A ``random-X`` control fitted after ``X`` gets as many heads as ``X`` chose (``k``).
    Fixes that do not change the model (``base``, ``threshold``) reuse the clean ``p_yes`` at their threshold.
    ``partial``: a CSV rewritten (atomically) after every method with the rows so far, so a long run that is
    stopped keeps what it measured.
    """
    from nasa_lens.evaluate import evaluate, result_from_predictions
    from nasa_lens.heads import format_head
    from nasa_lens.finetune import lm_loss as lm_loss_fn
    from nasa_lens.prompts import PromptFormat

    fixes = build_fixes(methods, options)
    train = list(train)
    if not train:
        raise DebiasError("no training examples")
    if not test_sets:
        raise DebiasError("no test set")
    fmt = PromptFormat.named(format)
    rows: list[dict[str, Any]] = []
    clean: dict[str, Any] = {}
    clean_lm: np.ndarray | None = None

    def clean_results() -> dict[str, Any]:
        nonlocal clean_lm
        if not clean:
            for name, ds in test_sets.items():
                clean[name] = evaluate(model, ds, fmt, batch_size=batch_size, n_boot=n_boot, seed=seed, progress=progress)
            clean_lm = lm_loss_fn(model) if lm_loss else None
        return clean

    overall = tqdm(total=len(fixes), desc="compare", unit="fix", disable=not progress)  # fixes fitted and evaluated
    for name, fix in fixes.items():
        overall.set_postfix_str(name)
        twin = fixes.get(name.removeprefix("random-")) if name.startswith("random-") else fixes.get("nasa") if name == "random" else None
        if twin is not None and twin.fitted and twin.heads and hasattr(fix, "k"):
            fix.k, fix.k_grid = len(twin.heads), None  # the control gets as many heads as its twin chose
        logger.info("compare: fitting %s", name)
        fix.fit(model, train)
        if not fix.changes_model:
            for ds_name, res in clean_results().items():
                r = result_from_predictions(res.ids, res.labels, res.p_yes, res.logit_diff, threshold=fix.threshold, n_boot=n_boot,
                                            seed=seed, model=res.model, dataset=res.dataset, format=res.format)
                rows.append(_row(name, ds_name, r, fix, clean_lm))
            if partial is not None:
                with atomic_path(partial) as tmp:
                    pd.DataFrame(rows, columns=comparison_columns()).to_csv(tmp, index=False)
            overall.update()
            continue
        with fix.apply(model):
            lm = lm_loss_fn(model) if lm_loss else None
            for ds_name, ds in test_sets.items():
                res = evaluate(model, ds, fmt, batch_size=batch_size, threshold=fix.threshold, n_boot=n_boot, seed=seed, progress=progress)
                rows.append(_row(name, ds_name, res, fix, lm))
        logger.info("compare: %s done", name)
        if partial is not None:
            with atomic_path(partial) as tmp:
                pd.DataFrame(rows, columns=comparison_columns()).to_csv(tmp, index=False)
        overall.update()
    overall.close()
    frame = pd.DataFrame(rows, columns=comparison_columns())
    meta = {
        "model": model.name,
        "methods": list(fixes),
        "n_train": len(train),
        "test": {k: len(v) for k, v in test_sets.items()},
        "heads": {k: [format_head(h) for h in f.heads] for k, f in fixes.items()},
        "settings": {k: _settings(f) for k, f in fixes.items()},
        "format": format,
        "seed": seed,
        "n_boot": n_boot,
    }
    return FixComparison(frame=frame, fixes=fixes, meta=meta)


def _settings(fix: DebiasMethod) -> str:
    if fix.name == "threshold":
        return f"threshold {fix.threshold:.4f}"
    if hasattr(fix, "alpha"):
        return f"alpha {fix.alpha:g}"
    if getattr(fix, "steps", None):
        return f"{fix.info.get('steps_done')} steps, kept step {fix.info.get('best_step')}"
    return ""
