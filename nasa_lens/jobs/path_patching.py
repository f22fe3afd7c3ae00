"""The path-patching job (``nasa-lens paths``; load -> run -> write -> draw): :func:`run_paths` builds the
counterfactual pairs, picks the senders and receivers, runs :func:`nasa_lens.causal.paths.path_patch` and writes
``paths.csv/.npz/.json`` and one ``paths_heatmap_<via>`` figure per receiver input."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasa_lens.jobs.common import DataConfig, ModelConfig
from nasa_lens.parallel import writer_only
from nasa_lens.vocab import FORMATS, InputError, VIAS, check_format

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.causal.paths import PathPatchingResult

__all__ = ["PathsConfig", "run_paths"]


@dataclass
class PathsConfig:
    """One path-patching run (``nasa-lens paths``); the model and data come from the specs."""

    senders: str = field(default="top:4", metadata={"help": "L.H,L.H or top:K (most negative DLA via_no on the clean prompts)"})
    receivers: str | None = field(default=None, metadata={"help": "L.H,L.H or top:K; default every head after the first sender"})
    via: str = field(default="q,k,v", metadata={"help": "receiver inputs: any of q,k,v"})
    direct: bool = field(default=True, metadata={"help": "also the senders' direct paths to the logits"})
    pairs: str = field(default="swap", metadata={"help": "counterfactual pairs: swap (candidate order) or label (gold answer)",
                                                 "choices": ("swap", "label")})
    max_pairs: int | None = field(default=None, metadata={"help": "use at most N pairs"})
    format: str = field(default="yes-no", metadata={"help": "prompt format", "choices": FORMATS})
    batch_size: int = field(default=16, metadata={"help": "examples per forward"})
    png: bool = field(default=True, metadata={"help": "also write the figures as PNG (needs a Chromium)"})

    def __post_init__(self) -> None:
        from nasa_lens.heads import HeadSpecError, check_receivers_after, explicit_heads

        try:  # the specs' form (and the order of explicit lists), before any model is loaded or any scan runs
            senders = explicit_heads(self.senders)
        except HeadSpecError as exc:
            raise InputError(f"--senders: {exc}") from None
        receivers = None
        if self.receivers is not None:
            try:
                receivers = explicit_heads(self.receivers)
            except HeadSpecError as exc:
                raise InputError(f"--receivers: {exc}") from None
        if senders is not None and receivers is not None:
            try:
                check_receivers_after(senders, receivers)
            except HeadSpecError as exc:
                raise InputError(f"--receivers: {exc}") from None
        vias = self.vias
        if not vias or any(v not in VIAS for v in vias):
            raise InputError(f"via must list some of {list(VIAS)}, got {self.via!r}")
        if self.pairs not in ("swap", "label"):
            raise InputError(f"unknown pairs {self.pairs!r}; choose 'swap' or 'label'")
        if self.max_pairs is not None and self.max_pairs < 1:
            raise InputError(f"max_pairs must be >= 1, got {self.max_pairs}")
        check_format(self.format, InputError)
        if self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {self.batch_size}")

    @property
    def vias(self) -> list[str]:
        return [v.strip() for v in str(self.via).split(",") if v.strip()]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_paths(cfg: PathsConfig, out_dir: str | Path, *, model: ModelConfig | Any, data: DataConfig | Any,
              progress: bool = True) -> PathPatchingResult:
    """Build the pairs, pick senders/receivers, run :func:`nasa_lens.causal.paths.path_patch`, write files."""
    from nasa_lens.causal.patching import PairSet, label_pairs, swap_pairs
    from nasa_lens.causal.paths import path_patch
    from nasa_lens.dla import scan_dla
    from nasa_lens.heads import parse_heads
    from nasa_lens.io import atomic_output, check_out_dir
    from nasa_lens.plots import save_figure
    from nasa_lens.plots.dla import path_heatmap
    from nasa_lens.prompts import PromptFormat

    out = check_out_dir(out_dir)
    data = data.load() if isinstance(data, DataConfig) else data  # bad data is reported before the model loads
    model = model.load() if isinstance(model, ModelConfig) else model
    fmt = PromptFormat.named(cfg.format)
    examples = list(data)
    pairs = swap_pairs(examples, fmt) if cfg.pairs == "swap" else label_pairs(model, examples, fmt)
    if cfg.max_pairs is not None and len(pairs) > cfg.max_pairs:
        pairs = PairSet(pairs.clean[: cfg.max_pairs], pairs.corrupted[: cfg.max_pairs], pairs.clean_fmt, pairs.corrupted_fmt, pairs.kind)
    ranking = None
    if any(str(spec).startswith(("top:", "bottom:")) for spec in (cfg.senders, cfg.receivers) if spec):
        ranking = -scan_dla(model, pairs.clean, pairs.clean_fmt, batch_size=cfg.batch_size, progress=False).mean("via_no")
    L, H = model.n_layers, model.n_heads
    senders = parse_heads(cfg.senders, L, H, ranking)
    receivers = parse_heads(cfg.receivers, L, H, ranking) if cfg.receivers is not None else None
    result = path_patch(model, pairs, senders, receivers, vias=cfg.vias, direct=cfg.direct, batch_size=cfg.batch_size,
                        progress=progress)
    result.dataset = str(getattr(data, "name", ""))
    with writer_only() as write:
        if write:
            with atomic_output(out) as tmp:
                result.save(tmp)
                for via in cfg.vias:
                    save_figure(path_heatmap(result, via), tmp / f"paths_heatmap_{via}", png=cfg.png)
    return result
