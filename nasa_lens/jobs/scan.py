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
    """How ``nasa-lens scan`` scores the heads (the model and data are a :class:`ModelConfig` /
    :class:`DataConfig`; each field's help is its flag's)."""

    positions: str = field(
        default="after",
        metadata={"help": "query positions summed: after the instruction's later candidate, or the last token only",
                  "choices": POSITIONS},
    )
    format: str = field(default="yes-no", metadata={"help": "prompt format", "choices": FORMATS})
    batch_size: int = field(default=16, metadata={"help": "examples per forward"})
    top_k: int = field(default=10, metadata={"help": "how many top heads to print"})
    png: bool = field(default=True, metadata={"help": "also write the heatmap as PNG (needs a Chromium)"})

    def __post_init__(self) -> None:
        if self.positions not in POSITIONS:
            raise InputError(f"positions must be one of {list(POSITIONS)}, got {self.positions!r}")
        if self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.top_k < 1:
            raise InputError(f"top_k must be >= 1, got {self.top_k} (flag --top)")
        check_format(self.format, InputError)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_scan(
    cfg: ScanConfig,
    out_dir: str | Path,
    *,
    model: ModelConfig | LoadedModel,
    data: DataConfig | Sequence[Any],
    progress: bool = True,
) -> NASResult:
    """Run one scan and write its files into ``out_dir``:

    * ``nas.csv``: ``layer,head,nas_mean,nas_stderr,n,rank`` (rank 1 = most negative-biased);
    * ``nas_scores.npz`` + ``nas_scores.json``: per-example scores (:meth:`NASResult.save`);
    * ``nas_heatmap.html`` (+ ``.png`` when a Chromium is available).

    ``model`` / ``data`` are specs (loaded here: the data first, so bad data is reported before the model
    loads; the adapter with :func:`nasa_lens.adapters.load_adapter`) or an already loaded model (adapter
    applied) / dataset. The specs' fields are recorded beside ``cfg``'s in the result's ``meta["config"]``.
    """
    from nasa_lens.io import atomic_output, atomic_path, check_out_dir
    from nasa_lens.nas import scan_nas
    from nasa_lens.plots import nas_heatmap, save_figure
    from nasa_lens.prompts import PromptFormat

    out = check_out_dir(out_dir)
    config = {**(asdict(model) if isinstance(model, ModelConfig) else {}),
              **(asdict(data) if isinstance(data, DataConfig) else {}), **cfg.to_dict()}
    data = data.load() if isinstance(data, DataConfig) else data  # bad data is reported before the model loads
    model = model.load() if isinstance(model, ModelConfig) else model
    result = scan_nas(
        model, data, PromptFormat.named(cfg.format), positions=cfg.positions, batch_size=cfg.batch_size, progress=progress
    )
    result.meta["config"] = config
    with writer_only() as write:  # data-parallel (torchrun): rank 0 writes and draws, the others wait
        if write:
            with atomic_output(out) as tmp:  # the files appear together
                with atomic_path(tmp / NAS_RANKING_FILE) as f:
                    result.ranking_frame().to_csv(f, index=False)
                result.save(tmp)
                save_figure(nas_heatmap(result), tmp / NAS_HEATMAP_FILE, png=cfg.png)
    logger.info("wrote %s, %s, %s and %s.html to %s", NAS_RANKING_FILE, NAS_SCORES_FILE, NAS_META_FILE, NAS_HEATMAP_FILE, out)
    return result
