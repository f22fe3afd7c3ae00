"""The fine-tune job (``nasa-lens finetune``): load the training datasets, hold out a validation split, train a
NASA adapter (:func:`nasa_lens.finetune.train_nasa`, checkpointed and resumable) and write the adapter,
``metrics.json`` and ``history.csv``."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasa_lens.finetune.config import NASAConfig
from nasa_lens.jobs.common import ModelConfig
from nasa_lens.parallel import writer_only
from nasa_lens.vocab import InputError

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.finetune import TrainResult

__all__ = ["FinetuneJobConfig", "run_finetune"]

CHECKPOINTS_DIR = "checkpoints"


@dataclass
class FinetuneJobConfig:
    """The data side of ``nasa-lens finetune`` (the run itself is a :class:`NASAConfig`; its ``seed`` also
    seeds the sampling and the validation hold-out)."""

    train: str = field(metadata={"help": "dataset name(s) or .jsonl path(s), comma-separated; their train splits are used"})
    limit: int | None = field(default=None, metadata={"help": "a label-balanced sample of exactly N training examples per dataset (N//2 no, the rest yes); an error when either label has too few"})
    val_fraction: float = field(default=0.2, metadata={"help": "share of the training split held out for validation"})
    val_limit: int | None = field(default=None, metadata={"help": "at most N validation examples"})
    resume: bool = field(default=False, metadata={"help": "continue from OUT/checkpoints if present"})

    def __post_init__(self) -> None:
        if not self.names:
            raise InputError("--train names no dataset")
        if self.limit is not None and self.limit <= 0:
            raise InputError(f"limit must be > 0 (or None for all examples), got {self.limit}")
        if self.val_limit is not None and self.val_limit < 1:
            raise InputError(f"--val-limit must be >= 1, got {self.val_limit}")

    @property
    def names(self) -> list[str]:
        return list(dict.fromkeys(n.strip() for n in str(self.train).split(",") if n.strip()))


def run_finetune(cfg: NASAConfig, job: FinetuneJobConfig, out_dir: str | Path, *, model: ModelConfig | Any) -> TrainResult:
    """Train and write ``adapter.safetensors``, ``adapter.json``, ``metrics.json``, ``history.csv`` and
    ``checkpoints/`` into ``out_dir``."""
    from nasa_lens.datasets import load_datasets
    from nasa_lens.finetune import holdout_split, train_nasa
    from nasa_lens.io import atomic_output, check_out_dir

    out = check_out_dir(out_dir)
    examples = load_datasets(job.names, limit=job.limit, seed=cfg.seed, split="train")
    train, val = holdout_split(examples, job.val_fraction, seed=cfg.seed)
    if job.val_limit is not None:
        val = val[: job.val_limit]
    model = model.load() if isinstance(model, ModelConfig) else model
    # the checkpoints live in OUT itself (resumable state across runs); the outputs appear together at the end
    result = train_nasa(model, train, val, cfg, checkpoint_dir=out / CHECKPOINTS_DIR, resume=job.resume)
    with writer_only() as write:  # data-parallel (torchrun): rank 0 writes, the others wait
        if write:
            with atomic_output(out) as tmp:
                result.save(tmp, model)
    return result
