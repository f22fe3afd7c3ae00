"""Causal verification: do the high-NAS heads *cause* the negative bias?

NAS says where a head looks; this module intervenes and measures. Every study compares against controls and
reports effect sizes with confidence intervals and p-values, as tidy long-format tables.

* :func:`ablate` (CLI ``nasa-lens ablate``): one head set ablated, metrics before / after.
* :func:`ablation_curve`: ablate the top-k NAS heads for each k, side by side with k random heads (several
  seeds) and the k lowest-NAS heads; paired bootstrap CIs (examples resampled, the same draw for the clean
  run) and a permutation p-value of top-k (and bottom-k) against the random control.
* :func:`effect_sweep`: the effect of ablating each head alone on the mean logit difference
  ``logit(Yes) - logit(No)``, exactly (one ablated forward per head, started at the head's layer from the
  cached clean residual) or by attribution patching (one clean forward + one backward for all heads:
  ``effect ~ (z_ablated - z_clean) . d metric / d z``); :func:`sweep_correlation` compares the two and
  :func:`nas_effect_table` puts NAS beside the causal effect.
* :func:`head_set_effects` (:mod:`nasa_lens.causal.headsets`): many head sets ablated on the same examples,
  per-example effects, each exact, the clean prompt run once per batch; on the suffix
  (:class:`SuffixRunner`, :mod:`nasa_lens.causal.suffix`) only the columns after the later candidate are
  recomputed, from the set's first layer, attending to the cached prefix keys/values.
* :func:`patch_heads` (CLI ``nasa-lens patch``): activation patching on counterfactual pairs (candidate order
  swapped, or gold answer flipped), per head, on the head output ``z`` or its attention pattern, normalised
  like TransformerLens: ``(patched - corrupted) / (clean - corrupted)`` of the mean logit difference.
* :func:`path_patch` (CLI ``nasa-lens paths``, :mod:`nasa_lens.causal.paths`): path patching, a sender head's
  effect through one receiver head's query, key or value input, or directly, on the same pairs.

Layout follows TransformerLens ``patching.py``: generic runners (:class:`BatchRunner`,
:func:`generic_head_patch`), thin named specialisations, result dataclasses with ``to_dataframe()`` (long
format), error bars and p-values, ``save`` / ``load``. One validated config dataclass per procedure.

Speed: forwards compute logits at the last position only (a hook on ``ln_final.hook_out`` keeps the last
column, so the unembedding runs on one position). ``run_with_hooks(start_at_layer=l)`` (:class:`BatchRunner`)
swaps the cached residual in at block ``l`` but still runs blocks ``0..l-1``; the effect sweeps and
:func:`head_set_effects` use :class:`SuffixRunner`, which calls the blocks from ``l`` on only (and, on the
suffix, only its columns); both agree with a full forward to float32 rounding.
"""
from __future__ import annotations

# The configs are torch-free and imported eagerly (the CLI builds its flags from them); everything else is
# loaded on first use, so ``import nasa_lens.causal.config`` does not import torch.
from nasa_lens.causal.config import (
    CURVE_METRICS,
    AblationConfig,
    AblationCurveConfig,
    CausalError,
    EffectSweepConfig,
    PatchingConfig,
)

_LAZY = {
    "runner": ("ranking_array", "ranking_from_csv", "vector_metrics"),
    "ablation": ("AblationResult", "AblationCurveResult", "ablate", "ablation_curve", "_perm_pvalues"),
    "sweep": ("EffectSweepResult", "effect_sweep", "exact_effects", "exact_effects_full_forward", "attribution_effects",
              "sweep_correlation", "nas_effect_table", "rank_correlation", "bootstrap_rank_correlation", "sweep_heads"),
    "suffix": ("SuffixError", "SuffixRunner", "suffix_start"),
    "headsets": ("HeadSetEffects", "head_set_effects", "run_ablations", "runner_for"),
    "patching": ("PairSet", "PatchingResult", "swap_pairs", "label_pairs", "generic_head_patch", "patch_head_outputs",
                 "patch_head_patterns", "patch_heads"),
    "paths": ("PathPatchingResult", "path_patch"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

__all__ = [
    "CURVE_METRICS",
    "CausalError",
    "AblationConfig",
    "AblationCurveConfig",
    "EffectSweepConfig",
    "PatchingConfig",
    *(n for names in _LAZY.values() for n in names if not n.startswith("_")),
]


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        value = getattr(importlib.import_module(f"nasa_lens.causal.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nasa_lens.causal' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
