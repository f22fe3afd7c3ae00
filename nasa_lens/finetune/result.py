"""The result of a NASA run: adapter, heads, history, before/after validation results; ``save`` writes the
adapter, ``metrics.json`` and ``history.csv``."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nasa_lens.adapters import HeadAdapter, save_adapter
from nasa_lens.evaluate import EvalResult
from nasa_lens.heads import Head, format_head, format_heads
from nasa_lens.io import atomic_path, write_json

from nasa_lens.finetune.config import NASAConfig

from nasa_lens.vocab import HISTORY_FILE, METRICS_FILE

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel


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
        write_json(out / METRICS_FILE, metrics)
        with atomic_path(out / HISTORY_FILE) as tmp:
            self.to_dataframe().to_csv(tmp, index=False)
        return out
