"""Interventions on tiny-random: each checks the tensor it changes (to hand-computed values) and the ones it
must leave alone (bitwise), that edits propagate downstream, and that no hook outlives its run."""
from __future__ import annotations

import pytest
import torch

from nasa_lens.interventions import (
    AttentionKnockout,
    Compose,
    HeadAblation,
    InterventionError,
    check_heads,
    collect_z_reference,
    heads_by_layer,
    intervene,
    knockout_query_mask,
    pattern_hook_name,
    z_hook_name,
)
from nasa_lens.prompts import build_batch


@pytest.fixture(scope="module")
def batch(model):
    from conftest import QUESTIONS

    return build_batch(model, QUESTIONS[:3])  # rows of different lengths: left padding


def _names(model, kind):
    return [f"blocks.{layer}.attn.hook_{kind}" for layer in range(model.n_layers)]


def _run(model, batch, hooks=(), capture=("z", "pattern")):
    """Logits and the activations named in ``capture`` *as the model used them* (capture hooks run after
    the intervention's hooks on the same hook point)."""
    seen = {}

    def keep(x, hook):
        seen[hook.name] = x.detach().clone()

    cap = [(n, keep) for kind in capture for n in _names(model, kind)]
    with torch.no_grad():
        logits = model.bridge.run_with_hooks(batch.input_ids, fwd_hooks=list(hooks) + cap, **batch.forward_kwargs())
    # hook.name of hook_z is its canonical name attn.o.hook_in
    out = {k.replace("attn.o.hook_in", "attn.hook_z"): v for k, v in seen.items()}
    return logits, out


def _no_hooks_left(model) -> bool:
    return all(not hp._forward_hooks and not hp._backward_hooks for hp in model.bridge.hook_dict.values())


@pytest.fixture(scope="module")
def clean(model, batch):
    return _run(model, batch)


# ------------------------------------------------------------------------------------------- zero


def test_zero_ablation_zeroes_the_head_and_nothing_else(model, batch, clean):
    logits0, act0 = clean
    ab = HeadAblation(((1, 2),), "zero")
    logits, act = _run(model, batch, ab.hooks(batch))
    z = act[z_hook_name(1)]
    assert torch.count_nonzero(z[:, :, 2]) == 0
    others = [h for h in range(model.n_heads) if h != 2]
    assert torch.equal(z[:, :, others], act0[z_hook_name(1)][:, :, others])
    # layer 0 runs before the ablation: bitwise unchanged
    assert torch.equal(act[z_hook_name(0)], act0[z_hook_name(0)])
    assert torch.equal(act[pattern_hook_name(0)], act0[pattern_hook_name(0)])
    # the edit reaches the logits
    assert (logits[:, -1] - logits0[:, -1]).abs().max() > 1e-4


def test_zeroing_a_pattern_equals_zeroing_its_z(model, batch):
    """hook_pattern feeds attn @ V, hook_z feeds o_proj: both routes give bitwise the same logits."""
    def zero_pattern(p, hook):
        p = p.clone()
        p[:, 1] = 0
        return p

    by_z, _ = _run(model, batch, HeadAblation(((0, 1),), "zero").hooks(batch), capture=())
    by_pattern, _ = _run(model, batch, [(pattern_hook_name(0), zero_pattern)], capture=())
    assert torch.equal(by_z, by_pattern)


def test_modified_z_is_what_the_o_projection_multiplies(model, batch):
    """attn.hook_out == o_proj(z as modified): the hook_z edit reaches the output projection."""
    seen = {}

    def keep(x, hook):
        seen[hook.name] = x.detach().clone()

    hooks = HeadAblation(((1, 0), (1, 3)), "zero").hooks(batch) + [(z_hook_name(1), keep), ("blocks.1.attn.hook_out", keep)]
    with torch.no_grad():
        model.bridge.run_with_hooks(batch.input_ids, fwd_hooks=hooks, **batch.forward_kwargs())
    z = seen["blocks.1.attn.o.hook_in"]
    assert torch.count_nonzero(z[:, :, [0, 3]]) == 0
    o_proj = model.bridge.blocks[1].attn.o.original_component
    expected = o_proj(z.flatten(-2))
    torch.testing.assert_close(seen["blocks.1.attn.hook_out"], expected, rtol=0, atol=1e-6)


def test_several_heads_across_layers(model, batch, clean):
    _, act0 = clean
    heads = ((0, 3), (1, 1), (1, 2))
    assert heads_by_layer(heads) == {0: [3], 1: [1, 2]}
    _, act = _run(model, batch, HeadAblation(heads, "zero").hooks(batch))
    assert torch.count_nonzero(act[z_hook_name(0)][:, :, 3]) == 0
    assert torch.count_nonzero(act[z_hook_name(1)][:, :, [1, 2]]) == 0
    assert torch.equal(act[z_hook_name(0)][:, :, :3], act0[z_hook_name(0)][:, :, :3])


# ------------------------------------------------------------------------------------------- mean / resample


@pytest.fixture(scope="module")
def reference(model):
    from conftest import QUESTIONS

    return collect_z_reference(model, QUESTIONS[3:], batch_size=2, pool_size=3, progress=False)


def test_reference_mean_is_aligned_from_the_end(model, reference):
    """Hand-computed from the reference prompts' own z, right-aligned (position 0 = last token)."""
    from conftest import QUESTIONS

    refs = QUESTIONS[3:]
    zs, lens = [], []
    for ex in refs:
        b = build_batch(model, [ex])
        _, act = _run(model, b, capture=("z",))
        zs.append(act[z_hook_name(1)][0].flip(0))  # [pos_from_end, head, d]
        lens.append(b.seq_len)
    lens_t = torch.tensor(lens)
    assert torch.equal(reference.count[: max(lens)], torch.tensor([int((lens_t > d).sum()) for d in range(max(lens))]))
    for d in (0, 5, min(lens) - 1, max(lens) - 1):
        have = [z[d] for z, n in zip(zs, lens) if n > d]
        torch.testing.assert_close(reference.mean[1, d], torch.stack(have).mean(0), rtol=1e-5, atol=1e-6)
    fallback = torch.cat([z for z in zs]).mean(0)
    torch.testing.assert_close(reference.fallback[1], fallback, rtol=1e-4, atol=1e-6)
    # laid out for a wider batch: the extra columns on the left get the all-token mean
    wide = reference.positional_mean(1, max(lens) + 4)
    torch.testing.assert_close(wide[-1], reference.mean[1, 0])
    torch.testing.assert_close(wide[0], reference.fallback[1])
    assert reference.pool is not None and reference.pool_ids == [ex.id for ex in refs]


def test_mean_ablation_sets_the_positional_mean(model, batch, clean, reference):
    _, act0 = clean
    _, act = _run(model, batch, HeadAblation(((1, 1),), "mean", reference).hooks(batch))
    z = act[z_hook_name(1)]
    expected = reference.positional_mean(1, batch.seq_len)[:, 1]
    for row in range(len(batch)):
        torch.testing.assert_close(z[row, :, 1], expected, rtol=0, atol=0)
    assert torch.equal(z[:, :, [0, 2, 3]], act0[z_hook_name(1)][:, :, [0, 2, 3]])
    assert torch.equal(act[z_hook_name(0)], act0[z_hook_name(0)])


def test_resample_ablation_takes_another_examples_z(model, reference):
    from conftest import QUESTIONS

    b = build_batch(model, QUESTIONS[3:5])  # ids that are in the pool: never resampled from themselves
    ab = HeadAblation(((1, 3),), "resample", reference, seed=7)
    lengths = b.attention_mask.sum(-1).tolist()
    sources = reference.resample_sources(b.ids, lengths, 7)
    assert all(reference.pool_ids[s] != row_id for s, row_id in zip(sources, b.ids))
    assert sources == reference.resample_sources(b.ids, lengths, 7)  # deterministic in (seed, id)
    _, act = _run(model, b, ab.hooks(b))
    z = act[z_hook_name(1)]
    for row, s in enumerate(sources):
        n = min(int(reference.pool_len[s]), b.seq_len)
        torch.testing.assert_close(z[row, b.seq_len - n :, 3], reference.pool[s, 1, :n, 3].flip(0), rtol=0, atol=0)
        if n < b.seq_len:  # not covered by the source: positional mean
            torch.testing.assert_close(z[row, : b.seq_len - n, 3], reference.positional_mean(1, b.seq_len)[: b.seq_len - n, 3])


# ------------------------------------------------------------------------------------------- knockout


def test_knockout_removes_attention_to_no_and_renormalises(model, batch, clean):
    _, act0 = clean
    ko = AttentionKnockout(((1, 2),), "remove", "no", "after")
    _, act = _run(model, batch, ko.hooks(batch))
    p0, p = act0[pattern_hook_name(1)], act[pattern_hook_name(1)]
    rows = knockout_query_mask(batch, "after")
    for r in range(len(batch)):
        edited = torch.nonzero(rows[r]).flatten()
        assert len(edited) > 0
        no = int(batch.pos_no[r])
        assert torch.count_nonzero(p[r, 2, edited, no]) == 0
        torch.testing.assert_close(p[r, 2, edited].sum(-1), torch.ones(len(edited)))
        # renormalised by hand: the other columns divided by 1 - A[no]
        expect = p0[r, 2, edited].clone()
        expect[:, no] = 0
        expect = expect / (1 - p0[r, 2, edited, no])[:, None]
        torch.testing.assert_close(p[r, 2, edited], expect, rtol=1e-5, atol=1e-7)
        untouched = torch.nonzero(~rows[r]).flatten()
        assert torch.equal(p[r, 2, untouched], p0[r, 2, untouched])
    assert torch.equal(p[:, [0, 1, 3]], p0[:, [0, 1, 3]])
    assert torch.equal(act[pattern_hook_name(0)], act0[pattern_hook_name(0)])
    assert torch.equal(act[z_hook_name(0)], act0[z_hook_name(0)])


def test_knockout_swap_exchanges_the_candidates(model, batch, clean):
    _, act0 = clean
    ko = AttentionKnockout(((0, 1),), "swap", rows="last")
    _, act = _run(model, batch, ko.hooks(batch))
    p0, p = act0[pattern_hook_name(0)], act[pattern_hook_name(0)]
    last = batch.seq_len - 1
    for r in range(len(batch)):
        y, n = int(batch.pos_yes[r]), int(batch.pos_no[r])
        assert p[r, 1, last, y] == p0[r, 1, last, n] and p[r, 1, last, n] == p0[r, 1, last, y]
        torch.testing.assert_close(p[r, 1, last].sum(), torch.tensor(1.0))
    assert torch.equal(p[:, 1, :last], p0[:, 1, :last])
    assert torch.equal(p[:, [0, 2, 3]], p0[:, [0, 2, 3]])


def test_knockout_query_rows(batch):
    after = knockout_query_mask(batch, "after")
    last = knockout_query_mask(batch, "last")
    for r in range(len(batch)):
        rows = torch.nonzero(after[r]).flatten().tolist()
        assert rows == list(range(int(batch.pos_candidate_last[r]) + 1, batch.seq_len))
        assert torch.nonzero(last[r]).flatten().tolist() == [batch.seq_len - 1]


def test_compose_applies_both(model, batch, clean):
    _, act0 = clean
    both = Compose((HeadAblation(((0, 0),)), AttentionKnockout(((1, 1),))))
    assert both.first_layer == 0
    _, act = _run(model, batch, both.hooks(batch))
    assert torch.count_nonzero(act[z_hook_name(0)][:, :, 0]) == 0
    r = 0
    edited = torch.nonzero(knockout_query_mask(batch)[r]).flatten()
    assert torch.count_nonzero(act[pattern_hook_name(1)][r, 1, edited, int(batch.pos_no[r])]) == 0


# ------------------------------------------------------------------------------------------- no leaks


def test_exception_inside_intervention_leaves_no_hook(model, batch):
    with torch.no_grad():
        before = model.bridge(batch.input_ids, **batch.forward_kwargs())
    # 1. an exception in the with-block
    with pytest.raises(RuntimeError, match="boom"):
        with intervene(model, HeadAblation(((0, 2), (1, 0)), "zero"), batch):
            assert not _no_hooks_left(model)
            raise RuntimeError("boom")
    assert _no_hooks_left(model)

    # 2. an exception raised by a hook in the middle of the forward pass
    def explode(x, hook):
        raise RuntimeError("hook exploded")

    ko = AttentionKnockout(((1, 3),))
    with pytest.raises(RuntimeError, match="hook exploded"):
        with intervene(model, Compose((HeadAblation(((0, 1),)), ko)), batch) as bridge:
            bridge.run_with_hooks(batch.input_ids, fwd_hooks=[("blocks.1.hook_resid_mid", explode)], **batch.forward_kwargs())
    with pytest.raises(RuntimeError, match="hook exploded"):
        model.bridge.run_with_hooks(batch.input_ids, fwd_hooks=ko.hooks(batch) + [("blocks.1.hook_resid_mid", explode)],
                                    **batch.forward_kwargs())
    assert _no_hooks_left(model)
    with torch.no_grad():
        after = model.bridge(batch.input_ids, **batch.forward_kwargs())
    assert torch.equal(before, after)


# ------------------------------------------------------------------------------------------- errors


def test_bad_interventions_are_clear_errors(model, batch, reference):
    with pytest.raises(InterventionError, match="unknown ablation mode 'scramble'"):
        HeadAblation(((0, 0),), "scramble")
    with pytest.raises(InterventionError, match="mean ablation needs a reference"):
        HeadAblation(((0, 0),), "mean")
    with pytest.raises(InterventionError, match="at least one head"):
        HeadAblation((), "zero")
    with pytest.raises(InterventionError, match="named twice"):
        HeadAblation(((0, 1), (0, 1)))
    with pytest.raises(InterventionError, match="resample ablation needs the batch"):
        HeadAblation(((0, 0),), "resample", reference).hooks(None)
    with pytest.raises(InterventionError, match="knockout needs the batch"):
        AttentionKnockout(((0, 0),)).hooks(None)
    with pytest.raises(InterventionError, match="unknown knockout mode 'blur'"):
        AttentionKnockout(((0, 0),), "blur")
    with pytest.raises(InterventionError, match="candidate must be 'no' or 'yes'"):
        AttentionKnockout(((0, 0),), candidate="maybe")
    with pytest.raises(InterventionError, match="outside the reference"):
        HeadAblation(((5, 0),), "mean", reference)
    with pytest.raises(InterventionError, match=r"head 0\.9: head 9 out of range \(the model has 4 heads"):
        check_heads(model, [(0, 9)])
    with pytest.raises(InterventionError, match=r"layer 3 out of range"):
        check_heads(model, [(3, 0)])
    with pytest.raises(InterventionError, match=r"head 1\.7 out of range: layer 1 has 4 heads"):
        _run(model, batch, HeadAblation(((1, 7),)).hooks(batch), capture=())
    assert _no_hooks_left(model)
    with pytest.raises(InterventionError, match="reference dataset .* is empty"):
        collect_z_reference(model, [], progress=False)
