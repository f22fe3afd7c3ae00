"""The eval job (``nasa-lens eval``): bias metrics of a model (with an optional adapter or saved de-biasing fix)
on a dataset."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasa_lens.parallel import writer_only
from nasa_lens.jobs.common import DataConfig, ModelConfig
from nasa_lens.vocab import FORMATS, InputError, check_format, check_threshold

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.evaluate import EvalResult

__all__ = ["EvalConfig", "run_eval"]


@dataclass
class EvalConfig:
    """How ``nasa-lens eval`` evaluates (the model and data are a :class:`ModelConfig` / :class:`DataConfig`)."""

    format: str = field(default="yes-no", metadata={"help": "prompt format", "choices": FORMATS})
    batch_size: int = field(default=16, metadata={"help": "examples per forward"})
    threshold: float = field(default=0.5, metadata={"help": "predict yes when p_yes > threshold"})
    n_boot: int = field(default=1000, metadata={"help": "bootstrap resamples for the confidence intervals"})
    seed: int = field(default=0, metadata={"help": "bootstrap seed"})
    method: str | None = field(default=None, metadata={"help": "a saved de-biasing fix to apply (a folder from nasa-lens "
                                                               "compare: OUT/methods/NAME); its threshold replaces --threshold"})

    def __post_init__(self) -> None:
        check_format(self.format, InputError)
        if self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {self.batch_size}")
        check_threshold(self.threshold)
        if self.n_boot < 0:
            raise InputError(f"n_boot must be >= 0, got {self.n_boot}")


def run_eval(
    cfg: EvalConfig,
    out_dir: str | Path,
    *,
    model: ModelConfig | Any,
    data: DataConfig | Any,
    progress: bool = True,
) -> EvalResult:
    """Evaluate and write ``metrics.json`` and ``predictions.csv`` into ``out_dir`` (together:
    :func:`nasa_lens.io.atomic_output`). ``model`` / ``data`` are specs (loaded here) or an already loaded model
    / dataset. ``out_dir`` is checked and the data read before the model is loaded."""
    from nasa_lens.evaluate import evaluate
    from nasa_lens.io import atomic_output, check_out_dir
    from nasa_lens.prompts import PromptFormat

    import contextlib

    out = check_out_dir(out_dir)
    data = data.load() if isinstance(data, DataConfig) else data
    if cfg.method:  # a user file: read (and its fields checked) before the model loads
        from nasa_lens.debias.base import read_method_meta

        read_method_meta(cfg.method)
    model = model.load() if isinstance(model, ModelConfig) else model
    fix, threshold = None, cfg.threshold
    if cfg.method:
        from nasa_lens.debias import load_method

        fix = load_method(cfg.method, model)
        threshold = fix.threshold
    with fix.apply(model) if fix is not None else contextlib.nullcontext():
        result = evaluate(model, data, PromptFormat.named(cfg.format), batch_size=cfg.batch_size, threshold=threshold,
                          n_boot=cfg.n_boot, seed=cfg.seed, progress=progress)
    if fix is not None:
        result.meta["method"] = {"name": fix.name, "folder": str(cfg.method), "heads": [f"{l}.{h}" for l, h in fix.heads]}
    with writer_only() as write:  # data-parallel (torchrun): rank 0 writes, the others wait
        if write:
            with atomic_output(out) as tmp:
                result.save(tmp)
    return result
