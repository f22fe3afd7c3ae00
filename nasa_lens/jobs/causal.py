"""The causal jobs: ``nasa-lens ablate`` (metrics before / after ablating a head set), ``nasa-lens patch``
(per-head activation patching on counterfactual pairs, with its heatmap) and ``nasa-lens sweep`` (every head's
ablation effect, exact on the suffix or on every position, or by attribution patching)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasa_lens.causal.config import AblationConfig, EffectSweepConfig, PatchingConfig
from nasa_lens.parallel import writer_only
from nasa_lens.jobs.common import DataConfig, ModelConfig
from nasa_lens.vocab import PATCHING_HEATMAP_FILE, SWEEP_HEATMAP_FILE, SWEEP_PARTIAL_DIR

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.causal import AblationResult, EffectSweepResult, PatchingResult

__all__ = ["AblateJobConfig", "PatchJobConfig", "SweepJobConfig", "run_ablate", "run_patch", "run_sweep"]


@dataclass
class AblateJobConfig:
    """What ``nasa-lens ablate`` reads besides the :class:`AblationConfig`."""

    nas: str | None = field(
        default=None,
        metadata={"help": "a scan folder (or its nas.csv) whose ranking top:K / bottom:K use; default: scan the data first"},
    )


@dataclass
class PatchJobConfig:
    """What ``nasa-lens patch`` writes besides the :class:`PatchingConfig` results."""

    png: bool = field(default=True, metadata={"help": "also write the heatmap as PNG (needs a Chromium)"})


@dataclass
class SweepJobConfig:
    """What ``nasa-lens sweep`` writes besides the :class:`EffectSweepConfig` results."""

    png: bool = field(default=True, metadata={"help": "also write the heatmap as PNG (needs a Chromium)"})


def _needs_ranking(spec: Any) -> bool:
    return isinstance(spec, str) and spec.split(":")[0].strip() in ("top", "bottom")


def run_ablate(
    cfg: AblationConfig, out_dir: str | Path, *, model: ModelConfig | Any, data: DataConfig | Any, job: AblateJobConfig | None = None,
    progress: bool = True,
) -> AblationResult:
    """Ablate ``cfg.heads`` (ranked by ``job.nas``, else by a scan of the data) and write ``metrics.json``
    and ``predictions.csv`` into ``out_dir``."""
    from nasa_lens import causal
    from nasa_lens.io import atomic_output, check_out_dir

    job = job or AblateJobConfig()
    out = check_out_dir(out_dir)
    data = data.load() if isinstance(data, DataConfig) else data
    ranking = None
    if _needs_ranking(cfg.heads) and job.nas:
        ranking = causal.ranking_from_csv(job.nas)  # a user file: read before the model loads
    model = model.load() if isinstance(model, ModelConfig) else model
    if _needs_ranking(cfg.heads) and ranking is None:
        from nasa_lens.nas import scan_nas
        from nasa_lens.prompts import PromptFormat

        ranking = scan_nas(model, data, PromptFormat.named(cfg.format), batch_size=cfg.batch_size, progress=progress).mean
    result = causal.ablate(model, data, cfg, ranking=ranking, progress=progress)
    with writer_only() as write:  # data-parallel (torchrun): rank 0 writes, the others wait
        if write:
            with atomic_output(out) as tmp:
                result.save(tmp)
    return result


def run_patch(
    cfg: PatchingConfig, out_dir: str | Path, *, model: ModelConfig | Any, data: DataConfig | Any, job: PatchJobConfig | None = None,
    progress: bool = True,
) -> tuple[PatchingResult, list[Path]]:
    """Patch every head on the pairs of ``cfg``; write ``patching.csv`` and the heatmap. Returns the result
    and the figure files written."""
    from nasa_lens import causal
    from nasa_lens.io import atomic_output, check_out_dir
    from nasa_lens.plots import save_figure
    from nasa_lens.plots.causal import patching_heatmap

    job = job or PatchJobConfig()
    out = check_out_dir(out_dir)
    data = data.load() if isinstance(data, DataConfig) else data
    model = model.load() if isinstance(model, ModelConfig) else model
    result = causal.patch_heads(model, data, cfg, progress=progress)
    written: list[Path] = []
    with writer_only() as write:  # data-parallel (torchrun): rank 0 writes and draws, the others wait
        if write:
            with atomic_output(out) as tmp:
                saved = result.save(tmp)
                written = save_figure(patching_heatmap(result), saved / PATCHING_HEATMAP_FILE, png=job.png)
                written = [out / Path(p).relative_to(tmp) for p in written]
    return result, written


def _sweep_key(cfg: EffectSweepConfig, model: Any, data: Any, spec: DataConfig | None) -> str:
    """Everything a sweep's numbers depend on, hashed: the partial results of another sweep are never reused."""
    import hashlib
    import json

    ids = [str(getattr(ex, "id", i)) for i, ex in enumerate(data)]
    key = {"config": cfg.to_dict(), "model": getattr(model, "name", ""), "source": str(getattr(model, "source", "")),
           "data": getattr(spec, "__dict__", {}), "ids": ids}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_sweep(
    cfg: EffectSweepConfig,
    out_dir: str | Path,
    *,
    model: ModelConfig | Any,
    data: DataConfig | Any,
    job: SweepJobConfig | None = None,
    progress: bool = True,
) -> EffectSweepResult:
    """Sweep the heads of ``cfg`` and write ``effects.csv``, ``effects_by_example.csv``, ``sweep.json`` and the
    heatmap into ``out_dir``. The exact method keeps per-batch, per-layer results in ``out_dir/sweep.partial``
    while it runs, so a killed sweep rerun with the same command resumes; they are removed once the files are
    written. Data-parallel under torchrun (rank 0 writes)."""
    import shutil
    import time

    from nasa_lens import causal
    from nasa_lens.io import atomic_output, check_out_dir
    from nasa_lens.parallel import world
    from nasa_lens.plots import save_figure
    from nasa_lens.plots.causal import effect_heatmap

    job = job or SweepJobConfig()
    out = check_out_dir(out_dir)
    spec = data if isinstance(data, DataConfig) else None
    data = data.load() if isinstance(data, DataConfig) else data
    model = model.load() if isinstance(model, ModelConfig) else model
    heads = causal.sweep_heads(model, cfg.heads, cfg.seed)  # the heads against the model's shape
    if cfg.heads.strip() != "all" and not heads:
        raise causal.CausalError(f"--heads {cfg.heads} names no head")
    partial = out / SWEEP_PARTIAL_DIR / _sweep_key(cfg, model, data, spec)
    t0 = time.perf_counter()
    result = causal.effect_sweep(model, data, cfg, partial=partial if cfg.method == "exact" else None, progress=progress)
    result.seconds = time.perf_counter() - t0
    result.meta.update({"split": getattr(spec, "split", None), "format": cfg.format, "heads": cfg.heads,
                        "limit": getattr(spec, "limit", None), "world_size": world().size, "config": cfg.to_dict()})
    if not result.dataset:
        result.dataset = str(getattr(spec, "data", "") or getattr(data, "name", ""))
    with writer_only() as write:  # data-parallel (torchrun): rank 0 writes and draws, the others wait
        if write:
            with atomic_output(out) as tmp:
                result.write_sweep(tmp)
                save_figure(effect_heatmap(result), tmp / SWEEP_HEATMAP_FILE, png=job.png)
            shutil.rmtree(out / SWEEP_PARTIAL_DIR, ignore_errors=True)
    return result
