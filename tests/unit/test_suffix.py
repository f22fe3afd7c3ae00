"""The suffix runner is exact: every suffix-confined intervention gives the logits of a full forward with the
same hooks (head ablation zero / mean / resample, attention knockout, activation patching of z and of the
pattern), on left-padded batches of mixed lengths with per-row suffix starts; anything else is refused."""
from __future__ import annotations

import pytest
import torch

from nasa_lens.causal.suffix import SuffixError, SuffixRunner, suffix_start
from nasa_lens.interventions import AttentionKnockout, Compose, HeadAblation, collect_z_reference, knockout_query_mask
from nasa_lens.prompts import PromptFormat, build_batch
from nasa_lens.vocab import pattern_hook_name, z_hook_name

# The candidates come before the question, so the suffix (after "No") holds the whole question: every row of
# the padded batch starts its suffix at another column, and the window starts at the earliest.
LEADING = PromptFormat(template="Answer with {first} or {second}. {question}")


def full_pair(model, batch, hooks) -> torch.Tensor:
    """``(logit_yes, logit_no)`` of a full forward with ``hooks`` (the reference)."""
    with torch.no_grad():
        logits = model.bridge.run_with_hooks(batch.input_ids, fwd_hooks=list(hooks), **batch.forward_kwargs())
    return logits[:, -1][:, [batch.answer_yes_id, batch.answer_no_id]].double()


@pytest.fixture(scope="module")
def tiny64():
    """tiny-random in float64. The bridge computes the softmax in float32, so a left-padded batch turns the
    fully masked padding rows (-1.8e308 in float64) into -inf and NaN: float64 runs use unpadded batches."""
    from nasa_lens.models import _boot, _smollm2_tokenizer, tiny_random

    return _boot("tiny-random", tiny_random().to(torch.float64), _smollm2_tokenizer(), None, torch.float64, None, {},
                 hub_name="tiny-random")


@pytest.fixture(scope="module")
def examples():
    from conftest import QUESTIONS

    return list(QUESTIONS)


@pytest.fixture(scope="module")
def reference(tiny, examples):
    return collect_z_reference(tiny, examples, batch_size=3, pool_size=6, progress=False)


def _interventions(reference):
    yield "zero 1.2", HeadAblation(((1, 2),), "zero", positions="after")
    yield "zero 0.1+1.3", HeadAblation(((0, 1), (1, 3)), "zero", positions="after")
    yield "mean 0.0,0.3,1.1", HeadAblation(((0, 0), (0, 3), (1, 1)), "mean", reference, positions="after")
    yield "resample 0.2+1.0", HeadAblation(((0, 2), (1, 0)), "resample", reference, seed=3, positions="after")
    yield "zero last 0.3", HeadAblation(((0, 3),), "zero", positions="last")
    yield "knockout remove", AttentionKnockout(((0, 1), (1, 2)), "remove", rows="after")
    yield "knockout swap last", AttentionKnockout(((1, 3),), "swap", rows="last")
    yield "compose", Compose((HeadAblation(((1, 1),), "zero", positions="after"), AttentionKnockout(((0, 0),), rows="after")))


@pytest.mark.parametrize("fmt", [PromptFormat(), LEADING], ids=["yes-no", "leading"])
def test_suffix_runner_equals_full_forward(tiny, examples, reference, fmt):
    """float32, left-padded batch of mixed lengths: 1e-5 (the float32 rounding of recomputing a few columns)."""
    batch = build_batch(tiny, examples, fmt)
    lengths = batch.attention_mask.sum(-1)
    assert lengths.min() < lengths.max()  # left padding of mixed lengths
    runner = SuffixRunner(tiny, batch, patterns=True)
    assert runner.start == int(suffix_start(batch).min())
    if fmt is LEADING:
        assert len(set(suffix_start(batch).tolist())) > 1  # per-row suffix starts
        assert runner.start < batch.seq_len - 10
    torch.testing.assert_close(runner.clean, full_pair(tiny, batch, []), rtol=0, atol=1e-6)
    torch.testing.assert_close(runner.pair([], 0), runner.clean, rtol=0, atol=1e-5)
    for name, iv in _interventions(reference):
        hooks = iv.hooks(batch)
        ref = full_pair(tiny, batch, hooks)
        assert (ref - runner.clean).abs().max() > 1e-4, name  # the intervention changes the answer logits
        torch.testing.assert_close(runner.pair(hooks), ref, rtol=0, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")


def test_suffix_runner_float64_unpadded(tiny64, examples):
    """float64 (unpadded rows, see ``tiny64``): the runner agrees with a full forward to 1e-10."""
    reference = collect_z_reference(tiny64, examples, batch_size=1, pool_size=6, progress=False)
    for ex in examples[:3]:
        for fmt in (PromptFormat(), LEADING):
            batch = build_batch(tiny64, [ex], fmt)
            runner = SuffixRunner(tiny64, batch, patterns=True)
            assert runner.clean.dtype == torch.float64 and runner.start > 0
            for name, iv in _interventions(reference):
                hooks = iv.hooks(batch)
                torch.testing.assert_close(runner.pair(hooks), full_pair(tiny64, batch, hooks), rtol=0, atol=1e-10,
                                           msg=lambda m, name=name: f"{name}: {m}")


def test_activation_patching_on_the_suffix(tiny, examples):
    """z and pattern of one head taken from the swapped-order prompt, written at the suffix positions only."""
    clean = build_batch(tiny, examples, PromptFormat())
    corrupted = build_batch(tiny, examples, PromptFormat().swapped())
    assert clean.input_ids.shape == corrupted.input_ids.shape
    names = {z_hook_name(1), pattern_hook_name(0)}
    with torch.no_grad():
        _, cache = tiny.bridge.run_with_cache(clean.input_ids, names_filter=lambda n: n in names, **clean.forward_kwargs())
    rows = knockout_query_mask(corrupted, "after")

    def patch_z(z, hook=None):
        z = z.clone()
        z[:, :, 2] = torch.where(rows[:, :, None], cache[z_hook_name(1)][:, :, 2], z[:, :, 2])
        return z

    def patch_pattern(p, hook=None):
        p = p.clone()
        p[:, 3] = torch.where(rows[:, :, None], cache[pattern_hook_name(0)][:, 3], p[:, 3])
        return p

    runner = SuffixRunner(tiny, corrupted, patterns=True)
    for hooks in ([(z_hook_name(1), patch_z)], [(pattern_hook_name(0), patch_pattern)],
                  [(pattern_hook_name(0), patch_pattern), (z_hook_name(1), patch_z)]):
        ref = full_pair(tiny, corrupted, hooks)
        assert (ref - runner.clean).abs().max() > 1e-4
        torch.testing.assert_close(runner.pair(hooks), ref, rtol=0, atol=1e-5)


def test_whole_prompt_runner_skips_layers_exactly(tiny, examples, reference):
    batch = build_batch(tiny, examples, LEADING)
    runner = SuffixRunner(tiny, batch, start=0)
    for iv in (HeadAblation(((1, 2),), "zero"), HeadAblation(((0, 1), (1, 3)), "mean", reference)):
        hooks = iv.hooks(batch)
        torch.testing.assert_close(runner.pair(hooks), full_pair(tiny, batch, hooks), rtol=0, atol=1e-5)
    resid = [("blocks.1.hook_resid_pre", lambda x, hook=None: x * 1.5)]  # any block point, whole prompt
    torch.testing.assert_close(runner.pair(resid), full_pair(tiny, batch, resid), rtol=0, atol=1e-5)


def test_not_suffix_confined_is_refused_and_the_model_stays_clean(tiny, examples, reference):
    batch = build_batch(tiny, examples, LEADING)
    runner = SuffixRunner(tiny, batch)
    before = full_pair(tiny, batch, [])
    for iv in (HeadAblation(((1, 2),), "zero"), HeadAblation(((0, 0),), "mean", reference)):  # every position
        with pytest.raises(SuffixError, match="not confined to the suffix"):
            runner.pair(iv.hooks(batch))
    with pytest.raises(SuffixError, match="patterns=True"):
        runner.pair(AttentionKnockout(((0, 1),)).hooks(batch))
    with pytest.raises(SuffixError, match="does not recompute hook point"):
        runner.pair([("blocks.1.hook_resid_pre", lambda x, hook=None: x)])
    with pytest.raises(SuffixError, match="after the first hooked layer"):
        runner.pair(HeadAblation(((0, 1),), positions="after").hooks(batch), start_layer=1)

    def boom(z, hook=None):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        runner.pair([(z_hook_name(1), boom)])
    assert all(not hp.fwd_hooks for hp in tiny.bridge.hook_dict.values() if hasattr(hp, "fwd_hooks"))
    assert torch.equal(full_pair(tiny, batch, []), before)  # no hook or cache outlives the refused runs
    # a hook that edits the prefix in place (returns None) is caught too
    def in_place(z, hook=None):
        z[:, 0] = 0.0

    with pytest.raises(SuffixError, match="position 0"):
        runner.pair([(z_hook_name(0), in_place)])


def test_suffix_positions_ablation_changes_only_suffix_z(tiny, examples):
    """HeadAblation(positions='after') on a full forward: z differs from the clean z exactly at the suffix rows."""
    batch = build_batch(tiny, examples, LEADING)
    got = {}

    def keep(z, hook=None):
        got["z"] = z.detach().clone()

    ab = HeadAblation(((1, 2),), "zero", positions="after")
    with torch.no_grad():
        tiny.bridge.run_with_hooks(batch.input_ids, fwd_hooks=[*ab.hooks(batch), (z_hook_name(1), keep)],
                                     **batch.forward_kwargs())
    z = got["z"][:, :, 2]
    rows = knockout_query_mask(batch, "after")
    assert torch.all(z[rows] == 0)
    assert torch.all(z[~rows].abs().sum(-1) > 0)
