"""The finished study: :class:`StudyResult` (what :func:`~nasa_lens.study.pipeline.run_study` returns and
:mod:`~nasa_lens.study.report` / :mod:`~nasa_lens.study.html` read). Below the pipeline and the report, so
neither needs the other for the type."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from nasa_lens.config import StudyConfig
from nasa_lens.io import read_json
from nasa_lens.study.common import REPORT_FILE, RESULTS_FILE, STAGES_DIR, TIMINGS_FILE, fmt_number, bias_frame
from nasa_lens.study.stages import DONE_FILE, StageOutput

__all__ = ["StudyResult"]


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
                             f"yes-rate {b['yes_rate']:.3f}, precision-recall gap {fmt_number(b['pr_gap'])}")
            a = r.get("after", {}).get("datasets", {}).get(main)
            if a:
                m = a["after"]
                lines.append(f"    after NASA: accuracy {m['accuracy']:.3f}, recall {m['recall']:.3f}, yes-rate {m['yes_rate']:.3f}")
        lines.append(f"report: {self.report_path}")
        return "\n".join(lines)

    @classmethod
    def load(cls, out_dir: str | Path) -> StudyResult:
        """Read a finished study folder (``results.json`` and the stage index in ``timings.json``); no checks
        (:func:`load_finished_study` checks)."""
        out = Path(out_dir)
        results = read_json(out / RESULTS_FILE)
        cfg = StudyConfig.from_dict(results["config"], source=str(out / RESULTS_FILE))
        timings = read_json(out / TIMINGS_FILE)
        stages = {
            t["stage"]: StageOutput(t["stage"], t["key"], out / STAGES_DIR / t["folder"],
                                    read_json(out / STAGES_DIR / t["folder"] / DONE_FILE)["summary"], True, t["seconds"],
                                    float(t.get("cpu_seconds") or float("nan")))
            for t in timings["stages"]
        }
        figures_dir = out / timings.get("figures_dir", "figures")  # relative to the study (an absolute one stays)
        return cls(out, figures_dir, cfg, stages, results, sorted(figures_dir.glob("*.*")) if figures_dir.is_dir() else [])
