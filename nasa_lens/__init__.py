"""nasa-lens: negative-bias interpretability on TransformerLens hooks.

Find the attention heads that attend to the "No" candidate of a yes/no instruction (negative attention
score, NAS; Yu et al., NAACL 2025), test whether they cause the negative bias (ablation, knockout,
patching), and remove it with a head-restricted fine-tune (NASA).

Names are imported lazily so ``import nasa_lens`` stays fast.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "nasa_lens.models",
    "list_models": "nasa_lens.models",
    "LoadedModel": "nasa_lens.models",
    "ModelLoadError": "nasa_lens.models",
    "load_dataset": "nasa_lens.datasets",
    "list_datasets": "nasa_lens.datasets",
    "YesNoDataset": "nasa_lens.datasets",
    "Example": "nasa_lens.datasets",
    "DatasetError": "nasa_lens.datasets",
    "PromptFormat": "nasa_lens.prompts",
    "PromptError": "nasa_lens.prompts",
    "build_batch": "nasa_lens.prompts",
    "evaluate": "nasa_lens.evaluate",
    "EvalResult": "nasa_lens.evaluate",
    "bias_metrics": "nasa_lens.evaluate",
    "scan_nas": "nasa_lens.nas",
    "NASResult": "nasa_lens.nas",
    "ablation_curve": "nasa_lens.causal",
    "effect_sweep": "nasa_lens.causal",
    "head_set_effects": "nasa_lens.causal",
    "SuffixRunner": "nasa_lens.causal",
    "patch_heads": "nasa_lens.causal",
    "HeadAblation": "nasa_lens.interventions",
    "AttentionKnockout": "nasa_lens.interventions",
    "run_study": "nasa_lens.study",
    "StudyConfig": "nasa_lens.config",
    "load_config": "nasa_lens.config",
    "NasaLensError": "nasa_lens.vocab",
    "InputError": "nasa_lens.vocab",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'nasa_lens' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
