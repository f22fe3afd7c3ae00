"""Names the study modules share: the stage order, file names, the package version (part of every stage key),
stage names, number formatting and the long-format bias frame of ``results.json``."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from nasa_lens.io import atomic_path, read_json
from nasa_lens.vocab import ABLATION_FILE, CONDITION_LABELS_FILE, MANIFEST_FILE, REPORT_FILE, REPORT_HTML_FILE, InputFileNotFoundError  # noqa: F401  (the study's names)
from nasa_lens.study.stages import StageOutput

STAGE_ORDER: tuple[str, ...] = ("bias", "nas", "conditions", "ablation", "finetune", "after", "compare", "report")
STAGES_DIR = "stages"
RESULTS_FILE = "results.json"
TIMINGS_FILE = "timings.json"
LOCK_FILE = ".lock"  # held by the one run working in the folder


class StudyNotFinishedError(InputFileNotFoundError):
    """A folder that is not a finished study (the message names what is missing)."""




def package_version() -> str:
    """The package version (part of every stage key)."""
    try:
        from nasa_lens import __version__

        return __version__
    except ImportError:  # a broken editable install can import the package as a bare namespace
        from importlib.metadata import version

        return version("nasa-lens")


def stage_name(kind: str, model: str | None) -> str:
    return kind if model is None else f"{kind}@{model}"


CURVE_DIR = "curve"
TRAINING_CURVE_COLUMNS = ("train_loss", "val_loss", "val_pr_gap", "val_yes_rate", "val_accuracy")


def fmt_number(x: Any, spec: str = ".3f") -> str:
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


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def load_nas(stage: StageOutput) -> Any:
    """The NAS scan a ``nas`` stage wrote."""
    from nasa_lens.nas import NASResult

    return NASResult.load(stage.path / "nas")


def load_conditions(stage: StageOutput) -> dict[str, Any]:
    """The per-condition NAS scans a ``conditions`` stage wrote, by condition label."""
    from nasa_lens.nas import NASResult

    labels = read_json(stage.path / "conditions" / CONDITION_LABELS_FILE)
    return {label: NASResult.load(stage.path / "conditions" / f"{i:02d}") for i, label in enumerate(labels)}
