"""The DLA job (``nasa-lens dla``; load -> run -> write -> draw). :func:`run_dla` writes ``dla.csv``
(``layer,head,dla_mean,dla_stderr,via_yes,via_no,via_other,n``), ``components.csv`` (embedding, MLPs, biases,
the heads' sum, the residual and the logit difference), ``copying.csv`` (OV copying score, weights only),
``dla_scores.npz/.json`` (per example, with NAS from the same forwards) and the figures ``dla_via_no_heatmap``,
``dla_nas_vs_via_no``, ``dla_split_bars``.

Path patching (``nasa-lens paths``) lives in :mod:`nasa_lens.jobs.path_patching`; its old names here
(``PathsConfig``, ``run_paths``) still import, with a DeprecationWarning.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasa_lens.jobs.common import DataConfig, ModelConfig
from nasa_lens.parallel import writer_only
from nasa_lens.vocab import DLA_COMPONENTS_FILE, DLA_TABLE_FILE, FORMATS, InputError, POSITIONS, check_format

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.dla import DLAResult

__all__ = ["DLAConfig", "run_dla"]

logger = logging.getLogger(__name__)


@dataclass
class DLAConfig:
    """One DLA run (``nasa-lens dla``); the model and data come from :class:`ModelConfig` / :class:`DataConfig`."""

    format: str = field(default="yes-no", metadata={"help": "prompt format", "choices": FORMATS})
    batch_size: int = field(default=16, metadata={"help": "examples per forward"})
    nas_positions: str = field(default="after", metadata={"help": "NAS computed in the same forwards", "choices": POSITIONS})
    top_k: int = field(default=10, metadata={"help": "heads printed and drawn in the bar chart"})
    png: bool = field(default=True, metadata={"help": "also write the figures as PNG (needs a Chromium)"})

    def __post_init__(self) -> None:
        check_format(self.format, InputError)
        if self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.nas_positions not in POSITIONS:
            raise InputError(f"nas_positions must be one of {list(POSITIONS)}, got {self.nas_positions!r}")
        if self.top_k < 1:
            raise InputError(f"top_k must be >= 1, got {self.top_k} (flag --top)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_dla(cfg: DLAConfig, out_dir: str | Path, *, model: ModelConfig | Any, data: DataConfig | Any, progress: bool = True) -> DLAResult:
    """Run DLA (with NAS from the same forwards) and the OV copying score; write the files and figures."""
    from nasa_lens.copying import ov_copying
    from nasa_lens.dla import scan_dla
    from nasa_lens.io import atomic_output, atomic_path, check_out_dir
    from nasa_lens.plots import save_figure
    from nasa_lens.plots.dla import nas_vs_via_no, split_bars, via_no_heatmap
    from nasa_lens.prompts import PromptFormat

    out = check_out_dir(out_dir)
    data = data.load() if isinstance(data, DataConfig) else data  # bad data is reported before the model loads
    model = model.load() if isinstance(model, ModelConfig) else model
    fmt = PromptFormat.named(cfg.format)
    result = scan_dla(model, data, fmt, batch_size=cfg.batch_size, progress=progress, nas_positions=cfg.nas_positions)
    result.meta["config"] = cfg.to_dict()
    with writer_only() as write:  # data-parallel (torchrun): rank 0 writes and draws, the others wait
        if write:
            with atomic_output(out) as tmp:  # the files appear together
                with atomic_path(tmp / DLA_TABLE_FILE) as f:
                    result.table().to_csv(f, index=False)
                with atomic_path(tmp / DLA_COMPONENTS_FILE) as f:
                    result.component_table().to_csv(f, index=False)
                result.save(tmp)
                ov_copying(model, fmt).save(tmp)
                save_figure(via_no_heatmap(result), tmp / "dla_via_no_heatmap", png=cfg.png)
                save_figure(nas_vs_via_no(result.nas.mean(0), result), tmp / "dla_nas_vs_via_no", png=cfg.png)
                save_figure(split_bars(result, k=min(cfg.top_k, result.n_layers * result.n_heads)), tmp / "dla_split_bars",
                            png=cfg.png)
    logger.info("wrote %s, %s and figures to %s", DLA_TABLE_FILE, DLA_COMPONENTS_FILE, out)
    return result


_MOVED = {"PathsConfig": "nasa_lens.jobs.path_patching", "run_paths": "nasa_lens.jobs.path_patching"}
"""Names that moved to their own module with path patching."""


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import importlib
        import warnings

        warnings.warn(f"nasa_lens.jobs.dla.{name} is deprecated; import it from {_MOVED[name]}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'nasa_lens.jobs.dla' has no attribute {name!r}")
