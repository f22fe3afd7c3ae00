"""The scan job (``nasa-lens scan``): load a model (and adapter) and a dataset, score every head's NAS,
write ``nas.csv``, the per-example scores and a heatmap."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasa_lens.parallel import writer_only
from nasa_lens.jobs.common import DataConfig, ModelConfig
from nasa_lens.vocab import (
    DEFAULT_MODEL,
    FORMATS,
    NAS_HEATMAP_FILE,
    NAS_META_FILE,
    NAS_RANKING_FILE,
    NAS_SCORES_FILE,
    POSITIONS,
    InputError,
    check_format,
)

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel
    from nasa_lens.nas import NASResult

__all__ = ["ScanConfig", "run_scan"]

logger = logging.getLogger(__name__)


@dataclass
class ScanConfig:
    """Everything one NAS scan needs (``nasa-lens scan`` builds it from its flags; each field's help is its flag's)."""

    data: str = field(metadata={"help": "dataset name (see `nasa-lens data list`) or a .jsonl path"})
    model: str = field(default=DEFAULT_MODEL, metadata={"help": "built-in name, local folder, .gguf file or hub id"})
    limit: int | None = field(default=None, metadata={"help": "a label-balanced sample of exactly N examples (N//2 no, the rest yes); an error when either label has too few"})
    seed: int = field(default=0, metadata={"help": "sampling seed"})
    split: str | None = field(default=None, metadata={"help": "train or test split (default: all examples)", "choices": ("train", "test")})
    positions: str = field(
        default="after",
        metadata={"help": "query positions summed: after the instruction's later candidate, or the last token only",
                  "choices": POSITIONS},
    )
    format: str = field(default="yes-no", metadata={"help": "prompt format", "choices": FORMATS})
    batch_size: int = field(default=16, metadata={"help": "examples per forward"})
    adapter: str | None = field(default=None, metadata={"help": "a NASA adapter (.safetensors) to apply first"})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1... (default: the bridge's choice)"})
    device_map: str | None = field(
        default=None, metadata={"help": "Hugging Face device map, e.g. auto (spreads a large model over GPUs)"}
    )
    top_k: int = field(default=10, metadata={"help": "how many top heads to print"})
    png: bool = field(default=True, metadata={"help": "also write the heatmap as PNG (needs a Chromium)"})

    def __post_init__(self) -> None:
        if not str(self.data).strip():
            raise InputError("data must name a dataset or a JSONL path")
        if not str(self.model).strip():
            raise InputError("model must be a model name or path")
        if self.positions not in POSITIONS:
            raise InputError(f"positions must be one of {list(POSITIONS)}, got {self.positions!r}")
        if self.limit is not None and self.limit <= 0:
            raise InputError(f"limit must be > 0 (or None for all examples), got {self.limit}")
        if self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.top_k < 1:
            raise InputError(f"top_k must be >= 1, got {self.top_k} (flag --top)")
        if self.split not in (None, "train", "test"):
            raise InputError(f"split must be 'train', 'test' or None, got {self.split!r}")
        check_format(self.format, InputError)
        if self.device is not None and self.device_map is not None:
            raise InputError("give either device or device_map, not both")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def model_spec(self) -> ModelConfig:
        return ModelConfig(self.model, self.device, self.device_map, self.adapter)

    @property
    def data_spec(self) -> DataConfig:
        return DataConfig(self.data, self.limit, self.seed, self.split)


def run_scan(
    cfg: ScanConfig,
    out_dir: str | Path,
    *,
    model: LoadedModel | None = None,
    dataset: Sequence[Any] | None = None,
    progress: bool = True,
) -> NASResult:
    """Run one scan and write its files into ``out_dir``:

    * ``nas.csv``: ``layer,head,nas_mean,nas_stderr,n,rank`` (rank 1 = most negative-biased);
    * ``nas_scores.npz`` + ``nas_scores.json``: per-example scores (:meth:`NASResult.save`);
    * ``nas_heatmap.html`` (+ ``.png`` when a Chromium is available).

    ``model`` / ``dataset`` may be passed in (already loaded, adapter applied); otherwise they are loaded
    from ``cfg`` (the adapter with :func:`nasa_lens.adapters.load_adapter`).
    """
    from nasa_lens.io import atomic_output, atomic_path, check_out_dir
    from nasa_lens.nas import scan_nas
    from nasa_lens.plots import nas_heatmap, save_figure
    from nasa_lens.prompts import PromptFormat

    out = check_out_dir(out_dir)
    if dataset is None:
        dataset = cfg.data_spec.load()  # bad data is reported before the model loads
    if model is None:
        model = cfg.model_spec.load()
    result = scan_nas(
        model, dataset, PromptFormat.named(cfg.format), positions=cfg.positions, batch_size=cfg.batch_size, progress=progress
    )
    result.meta["config"] = cfg.to_dict()
    with writer_only() as write:  # data-parallel (torchrun): rank 0 writes and draws, the others wait
        if write:
            with atomic_output(out) as tmp:  # the files appear together
                with atomic_path(tmp / NAS_RANKING_FILE) as f:
                    result.ranking_frame().to_csv(f, index=False)
                result.save(tmp)
                save_figure(nas_heatmap(result), tmp / NAS_HEATMAP_FILE, png=cfg.png)
    logger.info("wrote %s, %s, %s and %s.html to %s", NAS_RANKING_FILE, NAS_SCORES_FILE, NAS_META_FILE, NAS_HEATMAP_FILE, out)
    return result
