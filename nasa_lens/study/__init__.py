"""The main job: ``nasa-lens study``. Bias report -> NAS scan -> instruction-agnostic checks -> ablation
against controls -> NASA fine-tune -> after-report and generalisation -> report, for one or more models.

* :mod:`nasa_lens.study.pipeline`: the plan of stages, :func:`run_study`;
* :mod:`nasa_lens.study.result`: :class:`StudyResult`, the finished study;
* :mod:`nasa_lens.study.steps`: what each stage computes (:data:`STAGE_FUNCTIONS`), :class:`StudyEnv`;
* :mod:`nasa_lens.study.stages`: the cache that makes every stage resumable (keyed by what it reads);
* :mod:`nasa_lens.study.figures`: the report stage's figures and tables;
* :mod:`nasa_lens.study.report`: ``report.md``, one function per section;
* :mod:`nasa_lens.study.html`: ``report.html``, the same sections as one offline page, figures interactive.

    >>> from nasa_lens.config import StudyConfig
    >>> from nasa_lens.study import run_study
    >>> result = run_study(StudyConfig.quick(), "results/quick")     # doctest: +SKIP
    >>> print(result.summary())                                      # doctest: +SKIP
"""
from __future__ import annotations

from nasa_lens.study.common import RESULTS_FILE, REPORT_FILE, STAGE_ORDER, STAGES_DIR, TIMINGS_FILE, bias_frame
from nasa_lens.study.figures import build_report
from nasa_lens.study.pipeline import PlannedStage, load_finished_study, plan_stages, run_study
from nasa_lens.study.result import StudyResult
from nasa_lens.study.report import SECTIONS, Section, ablation_sentence, report_markdown, report_sections
from nasa_lens.study.steps import (
    STAGE_FUNCTIONS,
    StudyEnv,
    ablation_summary,
    nasa_config,
    paired_deltas,
)

__all__ = [
    "STAGE_ORDER",
    "STAGE_FUNCTIONS",
    "STAGES_DIR",
    "RESULTS_FILE",
    "REPORT_FILE",
    "TIMINGS_FILE",
    "StudyEnv",
    "StudyResult",
    "load_finished_study",
    "run_study",
    "PlannedStage",
    "plan_stages",
    "paired_deltas",
    "ablation_summary",
    "nasa_config",
    "bias_frame",
    "build_report",
    "report_markdown",
    "report_sections",
    "Section",
    "SECTIONS",
]
