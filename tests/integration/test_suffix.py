"""The suffix runner is exact on real models (SmolLM2, Gemma 3)."""
from __future__ import annotations

import pytest
import torch

from nasa_lens.causal.suffix import SuffixError, SuffixRunner
from nasa_lens.interventions import AttentionKnockout, HeadAblation, collect_z_reference
from nasa_lens.prompts import PromptFormat, build_batch
from unit.test_suffix import LEADING, examples, full_pair  # examples: a fixture


# ------------------------------------------------------------------------------------------ real models (slow)


def _real_interventions(model, examples, batch, reference):
    L = model.n_layers
    mid, late = L // 2, L - 3
    yield "zero", HeadAblation(((mid, 0),), "zero", positions="after")
    yield "zero 3 layers", HeadAblation(((1, 1), (mid, 2), (late, 0)), "zero", positions="after")
    yield "mean", HeadAblation(((2, 0), (mid, 1)), "mean", reference, positions="after")
    yield "resample", HeadAblation(((mid, 3), (late, 1)), "resample", reference, seed=1, positions="after")
    yield "knockout remove", AttentionKnockout(((mid, 0), (late, 2)), "remove", rows="after")
    yield "knockout swap last", AttentionKnockout(((1, 2),), "swap", rows="last")


def _check_real(model, examples, fmt, atol=1e-4):
    batch = build_batch(model, examples, fmt)
    assert batch.attention_mask.sum(-1).unique().numel() > 1  # mixed lengths, left padding
    reference = collect_z_reference(model, examples, fmt, batch_size=len(examples), pool_size=len(examples), progress=False)
    runner = SuffixRunner(model, batch, patterns=True)
    torch.testing.assert_close(runner.pair([], 0), runner.clean, rtol=0, atol=atol)
    moved = 0.0
    for name, iv in _real_interventions(model, examples, batch, reference):
        hooks = iv.hooks(batch)
        ref = full_pair(model, batch, hooks)
        moved = max(moved, float((ref - runner.clean).abs().max()))
        torch.testing.assert_close(runner.pair(hooks), ref, rtol=0, atol=atol, msg=lambda m, name=name: f"{name}: {m}")
    assert moved > 10 * atol  # the interventions move the answer logits far more than the tolerance
    with pytest.raises(SuffixError, match="not confined to the suffix"):
        runner.pair(HeadAblation(((1, 0),), "zero").hooks(batch))


@pytest.mark.slow
@pytest.mark.parametrize("fmt", [PromptFormat(), LEADING], ids=["yes-no", "leading"])
def test_suffix_runner_exact_on_smollm2(smol, examples, fmt):
    """SmolLM2 (Llama, rotary, grouped-query attention 9/3): every suffix intervention to 1e-4."""
    _check_real(smol, examples, fmt)


@pytest.fixture(scope="module")
def gemma():
    from nasa_lens.models import load_model

    return load_model("gemma3-270m")


@pytest.mark.slow
@pytest.mark.parametrize("window", [None, 16], ids=["as-shipped", "sliding-window-16"])
def test_suffix_runner_exact_on_gemma3(gemma, examples, window):
    """Gemma 3 270M (q/k norms, one KV head, sliding-window and global layers, two rotary bases) to 1e-4;
    with the sliding window shrunk to 16 tokens the sliding layers' masks cut into the prompt, and the suffix
    rows must still see exactly the keys the full forward lets them see."""
    cfg = gemma.bridge.original_model.config
    old = cfg.sliding_window
    assert "sliding_attention" in set(cfg.layer_types) and "full_attention" in set(cfg.layer_types)
    try:
        if window is not None:
            cfg.sliding_window = window
        _check_real(gemma, examples, LEADING)
    finally:
        cfg.sliding_window = old
