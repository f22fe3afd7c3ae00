"""Jobs of the mechanism commands: ``nasa-lens dla`` and ``nasa-lens paths`` (load -> run -> write -> draw).

* :func:`run_dla` writes ``dla.csv`` (``layer,head,dla_mean,dla_stderr,via_yes,via_no,via_other,n``),
  ``components.csv`` (embedding, MLPs, biases, the heads' sum, the residual and the logit difference),
  ``copying.csv`` (OV copying score, weights only), ``dla_scores.npz/.json`` (per example, with NAS from the
  same forwards) and the figures ``dla_via_no_heatmap``, ``dla_nas_vs_via_no``, ``dla_split_bars``.
* :func:`run_paths` writes ``paths.csv/.npz/.json`` and one ``paths_heatmap_<via>`` figure per input.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nasa_lens.dla import COMPONENTS_FILE, DLA_TABLE_FILE, DLAError, DLAResult, ov_copying, scan_dla
from nasa_lens.io import atomic_path
from nasa_lens.prompts import PromptFormat

__all__ = ["DLAConfig", "PathsConfig", "run_dla", "run_paths"]

logger = logging.getLogger(__name__)

_FORMATS = ("yes-no", "no-yes", "true-false", "false-true")


def _common_checks(cfg: Any) -> None:
    if not str(cfg.data).strip():
        raise DLAError("data must name a dataset or a JSONL path")
    if cfg.limit is not None and cfg.limit <= 0:
        raise DLAError(f"--limit must be > 0 (or left out for all examples), got {cfg.limit}")
    if cfg.batch_size < 1:
        raise DLAError(f"--batch-size must be >= 1, got {cfg.batch_size}")
    if cfg.format not in _FORMATS:
        raise DLAError(f"unknown format {cfg.format!r}; choose one of {list(_FORMATS)}")
    if cfg.split not in (None, "train", "test"):
        raise DLAError(f"split must be 'train', 'test' or None, got {cfg.split!r}")
    if cfg.device is not None and cfg.device_map is not None:
        raise DLAError("give either --device or --device-map, not both")


@dataclass
class DLAConfig:
    """One DLA run (``nasa-lens dla``)."""

    data: str = field(metadata={"help": "dataset name or JSONL path"})
    model: str = field(default="smollm2-135m-instruct", metadata={"help": "built-in name, local folder, .gguf or hub id"})
    limit: int | None = field(default=None, metadata={"help": "label-balanced sample of at most N examples (> 0)"})
    seed: int = field(default=0, metadata={"help": "sampling seed"})
    split: str | None = field(default=None, metadata={"help": "train, test or all"})
    format: str = field(default="yes-no", metadata={"help": "prompt format preset"})
    batch_size: int = field(default=16, metadata={"help": "examples per forward"})
    adapter: str | None = field(default=None, metadata={"help": "a NASA adapter to apply first"})
    nas_positions: str = field(default="after", metadata={"help": "NAS computed in the same forwards: after or last"})
    device: str | None = field(default=None, metadata={"help": "where to run the model"})
    device_map: str | None = field(default=None, metadata={"help": "Hugging Face device map"})
    top_k: int = field(default=10, metadata={"help": "heads printed and drawn in the bar chart"})
    png: bool = field(default=True, metadata={"help": "also write PNG figures (needs Chromium)"})

    def __post_init__(self) -> None:
        _common_checks(self)
        if self.nas_positions not in ("after", "last"):
            raise DLAError(f"nas_positions must be 'after' or 'last', got {self.nas_positions!r}")
        if self.top_k < 1:
            raise DLAError(f"top_k must be >= 1, got {self.top_k}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _load(cfg: Any, model: Any, dataset: Any) -> tuple[Any, Any]:
    if model is None:
        from nasa_lens.models import load_model

        model = load_model(cfg.model, device=cfg.device, device_map=cfg.device_map)
        if cfg.adapter:
            from nasa_lens.nasa import load_adapter

            load_adapter(model, cfg.adapter)
    if dataset is None:
        from nasa_lens.datasets import load_dataset

        dataset = load_dataset(cfg.data, limit=cfg.limit, seed=cfg.seed, split=cfg.split)
    return model, dataset


def run_dla(cfg: DLAConfig, out_dir: str | Path, *, model: Any = None, dataset: Any = None, progress: bool = True) -> DLAResult:
    """Run DLA (with NAS from the same forwards) and the OV copying score; write the files and figures."""
    from nasa_lens.plots import save_figure
    from nasa_lens.plots_dla import nas_vs_via_no, split_bars, via_no_heatmap

    model, dataset = _load(cfg, model, dataset)
    result = scan_dla(model, dataset, PromptFormat.named(cfg.format), batch_size=cfg.batch_size, progress=progress,
                      nas_positions=cfg.nas_positions)
    result.meta["config"] = cfg.to_dict()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / DLA_TABLE_FILE) as tmp:
        result.table().to_csv(tmp, index=False)
    with atomic_path(out / COMPONENTS_FILE) as tmp:
        result.component_table().to_csv(tmp, index=False)
    result.save(out)
    ov_copying(model, PromptFormat.named(cfg.format)).save(out)
    save_figure(via_no_heatmap(result), out / "dla_via_no_heatmap", png=cfg.png)
    save_figure(nas_vs_via_no(result.nas.mean(0), result), out / "dla_nas_vs_via_no", png=cfg.png)
    save_figure(split_bars(result, k=min(cfg.top_k, result.n_layers * result.n_heads)), out / "dla_split_bars", png=cfg.png)
    logger.info("wrote %s, %s and figures to %s", DLA_TABLE_FILE, COMPONENTS_FILE, out)
    return result


@dataclass
class PathsConfig:
    """One path-patching run (``nasa-lens paths``)."""

    data: str = field(metadata={"help": "dataset name or JSONL path"})
    senders: str = field(default="top:4", metadata={"help": "L.H,L.H or top:K (most negative DLA via_no on the clean prompts)"})
    receivers: str | None = field(default=None, metadata={"help": "L.H,L.H or top:K; default every head after the first sender"})
    via: str = field(default="q,k,v", metadata={"help": "receiver inputs: any of q,k,v"})
    direct: bool = field(default=True, metadata={"help": "also the sender's direct path to the logits"})
    pairs: str = field(default="swap", metadata={"help": "swap (candidate order) or label (gold answer) pairs"})
    max_pairs: int | None = field(default=None, metadata={"help": "use at most N pairs"})
    model: str = field(default="smollm2-135m-instruct", metadata={"help": "model name or path"})
    limit: int | None = field(default=None, metadata={"help": "label-balanced sample of at most N examples (> 0)"})
    seed: int = 0
    split: str | None = None
    format: str = "yes-no"
    batch_size: int = 16
    adapter: str | None = None
    device: str | None = None
    device_map: str | None = None
    png: bool = True

    def __post_init__(self) -> None:
        _common_checks(self)
        from nasa_lens.path_patching import VIAS

        vias = [v.strip() for v in self.via.split(",") if v.strip()]
        if not vias or any(v not in VIAS for v in vias):
            raise DLAError(f"--via must list some of {list(VIAS)}, got {self.via!r}")
        if self.pairs not in ("swap", "label"):
            raise DLAError(f"unknown pairs {self.pairs!r}; choose 'swap' or 'label'")
        if self.max_pairs is not None and self.max_pairs < 1:
            raise DLAError(f"--max-pairs must be >= 1, got {self.max_pairs}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_paths(cfg: PathsConfig, out_dir: str | Path, *, model: Any = None, dataset: Any = None, progress: bool = True):
    """Build the pairs, pick senders/receivers, run :func:`nasa_lens.path_patching.path_patch`, write files."""
    from nasa_lens.causal import PairSet, label_pairs, swap_pairs
    from nasa_lens.heads import parse_heads
    from nasa_lens.path_patching import path_patch
    from nasa_lens.plots import save_figure
    from nasa_lens.plots_dla import path_heatmap

    model, dataset = _load(cfg, model, dataset)
    fmt = PromptFormat.named(cfg.format)
    examples = list(dataset)
    pairs = swap_pairs(examples, fmt) if cfg.pairs == "swap" else label_pairs(model, examples, fmt)
    if cfg.max_pairs is not None and len(pairs) > cfg.max_pairs:
        pairs = PairSet(pairs.clean[: cfg.max_pairs], pairs.corrupted[: cfg.max_pairs], pairs.clean_fmt, pairs.corrupted_fmt, pairs.kind)
    ranking = None
    if any(str(spec).startswith(("top:", "bottom:")) for spec in (cfg.senders, cfg.receivers) if spec):
        ranking = -scan_dla(model, pairs.clean, pairs.clean_fmt, batch_size=cfg.batch_size, progress=False).mean("via_no")
    L, H = model.n_layers, model.n_heads
    senders = parse_heads(cfg.senders, L, H, ranking)
    receivers = parse_heads(cfg.receivers, L, H, ranking) if cfg.receivers else None
    vias = [v.strip() for v in cfg.via.split(",") if v.strip()]
    result = path_patch(model, pairs, senders, receivers, vias=vias, direct=cfg.direct, batch_size=cfg.batch_size, progress=progress)
    result.dataset = str(getattr(dataset, "name", ""))
    out = Path(out_dir)
    result.save(out)
    for via in vias:
        save_figure(path_heatmap(result, via), out / f"paths_heatmap_{via}", png=cfg.png)
    return result
