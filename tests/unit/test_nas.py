"""NAS: the formula by hand, the hook path against Hugging Face's own attention weights, padding invariance,
candidate positions, the result object, the instruction-agnostic analysis and the scan command."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import QUESTIONS

from nasa_lens.nas import (
    NAS_EPS,
    NASResult,
    condition_correlations,
    default_conditions,
    nas_by_group,
    nas_for_batch,
    nas_from_pattern,
    nas_hooks,
    nas_query_mask,
    scan_conditions,
    scan_nas,
)
from nasa_lens.jobs.common import DataConfig, ModelConfig
from nasa_lens.jobs.scan import ScanConfig, run_scan
from nasa_lens.prompts import PromptFormat, build_batch

# ------------------------------------------------------------------------------------------ helpers


def reference_nas(attentions, input_ids, pos_yes, pos_no, positions: str) -> np.ndarray:
    """NAS by explicit loops in float64 from per-layer attention tensors [batch, head, q, k] (independent of
    nasa_lens.nas): sum over the query rows of (a_yes + a_no) * log(a_no / a_yes), the paper's formula (an
    exact zero is floored at NAS_EPS)."""
    n, seq = input_ids.shape
    layers = [a.detach().double().cpu().numpy() for a in attentions]
    out = np.zeros((n, len(layers), layers[0].shape[1]))
    for r in range(n):
        ty, tn = int(pos_yes[r]), int(pos_no[r])
        rows = range(max(ty, tn) + 1, seq) if positions == "after" else [seq - 1]
        for li, a in enumerate(layers):
            for h in range(a.shape[1]):
                total = 0.0
                for i in rows:
                    ay, an = a[r, h, i, ty], a[r, h, i, tn]
                    total += (ay + an) * (math.log(max(an, NAS_EPS)) - math.log(max(ay, NAS_EPS)))
                out[r, li, h] = total
    return out


def hf_attentions(hf_model, batch):
    with torch.no_grad():
        out = hf_model(batch.input_ids, attention_mask=batch.attention_mask, output_attentions=True)
    assert out.attentions is not None and len(out.attentions) > 0
    return out.attentions


def toy_result(scores, labels=None, preds=None, **kw) -> NASResult:
    scores = np.asarray(scores, float)
    n = scores.shape[0]
    return NASResult(
        scores=scores,
        ids=[f"e{i}" for i in range(n)],
        labels=np.asarray(labels if labels is not None else [1] * n),
        preds=None if preds is None else np.asarray(preds),
        p_yes=None if preds is None else np.asarray(preds, float) * 0.5 + 0.25,
        **kw,
    )


# ------------------------------------------------------------------------------------------ the formula


def test_nas_from_pattern_matches_hand_computation():
    # one example, two heads, 4 positions; candidates: yes at key 0, no at key 1; sum over query rows 2 and 3.
    pattern = torch.zeros(1, 2, 4, 4)
    pattern[0, 0, 2] = torch.tensor([0.2, 0.6, 0.2, 0.0])
    pattern[0, 0, 3] = torch.tensor([0.5, 0.25, 0.0, 0.25])
    pattern[0, 1, 2] = torch.tensor([0.0, 0.5, 0.5, 0.0])  # A_yes = 0 exactly: the floor keeps it finite
    pattern[0, 1, 3] = torch.tensor([0.3, 0.3, 0.2, 0.2])  # equal: contributes 0
    pattern[0, :, 0, 0] = 1.0  # rows 0 and 1 are outside the mask and must not count
    pattern[0, :, 1, :2] = torch.tensor([0.9, 0.1])
    mask = torch.tensor([[False, False, True, True]])
    got = nas_from_pattern(pattern, torch.tensor([0]), torch.tensor([1]), mask)
    head0 = 0.8 * math.log(0.6 / 0.2) + 0.75 * math.log(0.25 / 0.5)  # the paper's formula, no epsilon
    head1 = 0.5 * (math.log(0.5) - math.log(NAS_EPS)) + 0.0  # only the exact zero is floored
    assert NAS_EPS == pytest.approx(1.1754944e-38, rel=1e-6)  # the smallest normal float32
    assert got.shape == (1, 2)
    assert got[0, 0].item() == pytest.approx(head0, rel=1e-6)  # 0.8 ln3 - 0.75 ln2 = 0.358985...
    assert got[0, 0].item() == pytest.approx(0.8 * math.log(3) - 0.75 * math.log(2), abs=1e-6)
    assert got[0, 1].item() == pytest.approx(head1, rel=1e-5)  # 0.5 (ln 0.5 + 87.336) = 43.32
    # swapping which key is "yes" negates the score
    swapped = nas_from_pattern(pattern, torch.tensor([1]), torch.tensor([0]), mask)
    assert swapped[0, 0].item() == pytest.approx(-head0, abs=1e-5)


def test_nas_from_pattern_ignores_nan_in_unmasked_rows():
    pattern = torch.full((1, 1, 3, 3), float("nan"))  # a padding query row may hold NaN
    pattern[0, 0, 2] = torch.tensor([0.5, 0.5, 0.0])
    pattern.requires_grad_(True)
    got = nas_from_pattern(pattern, torch.tensor([0]), torch.tensor([1]), torch.tensor([[False, False, True]]))
    assert got.item() == pytest.approx(0.0, abs=1e-7)
    got.sum().backward()  # nor into the gradient (a training loss uses detach=False)
    assert torch.isfinite(pattern.grad).all()


def test_nas_from_pattern_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"pattern must be \[example, head, q, k\]"):
        nas_from_pattern(torch.zeros(2, 3, 3), torch.tensor([0]), torch.tensor([1]), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="query_mask must have shape"):
        nas_from_pattern(torch.zeros(1, 1, 3, 3), torch.tensor([0]), torch.tensor([1]), torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="pos_no out of range"):
        nas_from_pattern(torch.zeros(1, 1, 3, 3), torch.tensor([0]), torch.tensor([3]), torch.ones(1, 3, dtype=torch.bool))


# ------------------------------------------------------------------------------------------ positions


def test_query_mask_after_and_last(tiny):
    batch = build_batch(tiny, [QUESTIONS[0], QUESTIONS[3]])
    seq = batch.seq_len
    after = nas_query_mask(batch, "after")
    last = nas_query_mask(batch, "last")
    for r in range(2):
        start = max(int(batch.pos_yes[r]), int(batch.pos_no[r])) + 1
        expected = torch.zeros(seq, dtype=torch.bool)
        expected[start:] = True
        assert torch.equal(after[r], expected)
        assert last[r].nonzero().flatten().tolist() == [seq - 1]
    # the instruction's "No" is the later candidate in "Yes or No"
    assert (batch.pos_no > batch.pos_yes).all()


def test_swapped_format_puts_no_first_and_after_starts_after_yes(tiny):
    fmt = PromptFormat.named("no-yes")
    batch = build_batch(tiny, [QUESTIONS[0], QUESTIONS[3]], fmt)
    tok = tiny.tokenizer
    for r in range(2):
        py, pn = int(batch.pos_yes[r]), int(batch.pos_no[r])
        assert pn < py
        assert tok.decode([int(batch.input_ids[r, py])]).strip() == "Yes"
        assert tok.decode([int(batch.input_ids[r, pn])]).strip() == "No"
        mask = nas_query_mask(batch, "after")[r]
        assert int(mask.nonzero().min()) == py + 1  # after the later candidate, which is now "Yes"
        assert not mask[pn : py + 1].any()


@pytest.mark.parametrize(
    "call",
    [
        lambda m, b: nas_query_mask(b, "first"),
        lambda m, b: nas_hooks(b, positions="first"),
        lambda m, b: nas_for_batch(m, b, positions="first"),
        lambda m, b: scan_nas(m, QUESTIONS[:2], positions="first"),
        lambda m, b: ScanConfig(positions="first"),
    ],
)
def test_bad_positions_value_is_a_clear_error(tiny, call):
    batch = build_batch(tiny, QUESTIONS[:2])
    with pytest.raises(ValueError, match=r"positions must be one of \['after', 'last'\], got 'first'"):
        call(tiny, batch)


# ------------------------------------------------------------------------------------------ hooks vs Hugging Face


@pytest.mark.parametrize("positions", ["after", "last"])
@pytest.mark.parametrize("fmt_name", ["yes-no", "no-yes"])
def test_hook_nas_matches_hf_attentions_tiny(tiny, tiny_hf, positions, fmt_name):
    batch = build_batch(tiny, [QUESTIONS[0], QUESTIONS[3], QUESTIONS[2]], PromptFormat.named(fmt_name))
    assert (batch.attention_mask == 0).any(), "the batch should be padded"
    got = nas_for_batch(tiny, batch, positions=positions)
    ref = reference_nas(hf_attentions(tiny_hf, batch), batch.input_ids, batch.pos_yes, batch.pos_no, positions)
    assert got.shape == (3, tiny.n_layers, tiny.n_heads)
    assert np.abs(ref).max() > 1e-2  # not trivially zero
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-4)


def test_padding_invariance(tiny):
    short, long = QUESTIONS[0], QUESTIONS[3]
    for positions in ("after", "last"):
        alone = nas_for_batch(tiny, build_batch(tiny, [short]), positions=positions)
        padded_batch = build_batch(tiny, [long, short])
        assert int(padded_batch.attention_mask[1].sum()) < padded_batch.seq_len
        padded = nas_for_batch(tiny, padded_batch, positions=positions)
        torch.testing.assert_close(padded[1], alone[0], atol=1e-4, rtol=0)


def test_hooks_match_full_pattern_reference_and_layer_subset(tiny):
    batch = build_batch(tiny, QUESTIONS[:3])
    full = nas_for_batch(tiny, batch)
    only1 = nas_for_batch(tiny, batch, layers=[1])
    assert only1.shape == (3, 1, tiny.n_heads)
    torch.testing.assert_close(only1[:, 0], full[:, 1])
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(tiny.n_layers)]
    _, cache = tiny.bridge.run_with_cache(batch.input_ids, names_filter=lambda n: n in names, **batch.forward_kwargs())
    mask = nas_query_mask(batch)
    for layer in range(tiny.n_layers):
        ref = nas_from_pattern(cache[names[layer]], batch.pos_yes, batch.pos_no, mask)
        torch.testing.assert_close(full[:, layer], ref, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"layers \[5\] out of range: the model has 2 layers"):
        nas_for_batch(tiny, batch, layers=[5])


def test_extra_hooks_run_before_nas_in_the_same_forward(tiny):
    batch = build_batch(tiny, QUESTIONS[:3])
    rows = torch.arange(len(batch))

    def equalise(pattern, hook):  # make layer 0 attend to "No" exactly as much as to "Yes"
        pattern = pattern.clone()
        pattern[rows, :, :, batch.pos_no] = pattern[rows, :, :, batch.pos_yes]
        return pattern

    base = nas_for_batch(tiny, batch)
    got = nas_for_batch(tiny, batch, hooks=[("blocks.0.attn.hook_pattern", equalise)])
    assert base[:, 0].abs().max() > 1e-3
    torch.testing.assert_close(got[:, 0], torch.zeros_like(got[:, 0]), atol=1e-6, rtol=0)
    assert not torch.allclose(got[:, 1], base[:, 1])  # layer 1 sees the changed residual stream
    res = scan_nas(tiny, QUESTIONS[:3], hooks=[("blocks.0.attn.hook_pattern", lambda p, hook: torch.zeros_like(p))], progress=False)
    np.testing.assert_allclose(res.scores[:, 0], 0.0, atol=1e-6)
    assert _all_hook_points_clean(tiny)


def _all_hook_points_clean(model) -> bool:
    return all(len(hp._forward_hooks) == 0 for hp in model.bridge.hook_dict.values())


def test_hooks_removed_after_run_and_after_an_exception(tiny):
    batch = build_batch(tiny, QUESTIONS[:2])
    nas_for_batch(tiny, batch)
    assert _all_hook_points_clean(tiny)
    other = build_batch(tiny, [QUESTIONS[3]])  # different length: the hooks' shape check raises
    hooks, _ = nas_hooks(batch)
    with pytest.raises(RuntimeError, match="hook_pattern: expected"):
        tiny.bridge.run_with_hooks(other.input_ids, fwd_hooks=hooks, **other.forward_kwargs())
    assert _all_hook_points_clean(tiny)


def test_nas_hooks_return_none_and_detach_controls_the_graph(tiny):
    batch = build_batch(tiny, QUESTIONS[:2])
    n, seq = len(batch), batch.seq_len
    torch.manual_seed(0)
    logits = torch.randn(n, tiny.n_heads, seq, seq, requires_grad=True)
    pattern = torch.softmax(logits, dim=-1)
    expected = nas_from_pattern(pattern.detach(), batch.pos_yes, batch.pos_no, nas_query_mask(batch))
    for detach in (True, False):
        hooks, store = nas_hooks(batch, layers=[3], detach=detach)
        assert [name for name, _ in hooks] == ["blocks.3.attn.hook_pattern"]
        assert hooks[0][1](pattern, None) is None
        torch.testing.assert_close(store[3].detach(), expected)
        assert store[3].requires_grad is (not detach)
    store[3].sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    # without layers: a single filter over every layer's pattern, the layer read from the hook point
    hooks, store = nas_hooks(batch)
    name_filter = hooks[0][0]
    assert callable(name_filter) and name_filter("blocks.12.attn.hook_pattern") and not name_filter("blocks.1.attn.hook_z")
    with pytest.raises(ValueError, match="layers names a layer twice"):
        nas_hooks(batch, layers=[1, 1])


# ------------------------------------------------------------------------------------------ scans


def test_scan_nas_scatters_back_in_input_order_with_predictions(tiny):
    from nasa_lens.evaluate import predict

    examples = list(QUESTIONS)
    res = scan_nas(tiny, examples, batch_size=4, progress=False)  # sorted by length inside: order must be restored
    assert res.ids == [ex.id for ex in examples]
    assert res.labels.tolist() == [1 if ex.label == "yes" else 0 for ex in examples]
    assert res.scores.shape == (6, 2, 4)
    for i in (0, 3, 5):
        alone = nas_for_batch(tiny, build_batch(tiny, [examples[i]]))
        np.testing.assert_allclose(res.scores[i], alone[0].numpy(), atol=1e-4)
    p, _ = predict(tiny, examples, batch_size=6, progress=False)
    np.testing.assert_allclose(res.p_yes, p, atol=1e-5)
    assert res.preds.tolist() == (p > 0.5).astype(int).tolist()
    assert res.kv_group.tolist() == [0, 0, 1, 1]  # 4 query heads read 2 KV heads
    assert res.positions == "after" and res.format == "Yes/No" and res.model == "tiny-random"


def test_scan_nas_plain_strings_get_index_ids(tiny):
    res = scan_nas(tiny, ["Is water wet?", "Is 2 odd?", "Is fire cold?"], batch_size=2, progress=False)
    assert res.ids == ["0", "1", "2"]
    assert res.labels.tolist() == [-1, -1, -1]
    with pytest.raises(ValueError, match="cannot scan an empty dataset"):
        scan_nas(tiny, [], progress=False)


def test_scan_conditions_one_result_per_format(tiny):
    results = scan_conditions(tiny, QUESTIONS[:3], progress=False)
    assert list(results) == ["Yes/No", "No/Yes", "True/False"]
    assert [r.format for r in results.values()] == ["Yes/No", "No/Yes", "True/False"]
    assert not np.allclose(results["Yes/No"].scores, results["No/Yes"].scores)
    assert list(default_conditions()) == ["Yes/No", "No/Yes", "True/False"]
    table = condition_correlations(results, k=3)
    assert len(table) == 3 and set(table["a"]) | set(table["b"]) == set(results)


# ------------------------------------------------------------------------------------------ the result object


def test_result_summaries_by_hand():
    # 3 examples x 1 layer x 3 heads
    scores = [[[1.0, 0.0, -1.0]], [[3.0, 0.0, -2.0]], [[2.0, 3.0, -3.0]]]
    res = toy_result(scores, labels=[1, 0, -1], preds=[1, 0, 0], model="m", dataset="d")
    np.testing.assert_allclose(res.mean, [[2.0, 1.0, -2.0]])
    # head 0: values 1,3,2 -> sd 1 -> stderr 1/sqrt(3); head 1: 0,0,3 -> sd sqrt(3) -> stderr 1
    np.testing.assert_allclose(res.stderr, [[1 / math.sqrt(3), 1.0, 1 / math.sqrt(3)]])
    assert res.top_heads(2) == [(0, 0), (0, 1)]
    assert res.bottom_heads(1) == [(0, 2)]
    frame = res.ranking_frame()
    assert list(frame.columns) == ["layer", "head", "nas_mean", "nas_stderr", "n", "rank"]
    assert frame["head"].tolist() == [0, 1, 2] and frame["rank"].tolist() == [1, 2, 3]
    assert frame["nas_mean"].tolist() == [2.0, 1.0, -2.0] and (frame["n"] == 3).all()
    long = res.to_dataframe()
    assert len(long) == 9
    row = long[(long["id"] == "e1") & (long["head"] == 2)].iloc[0]
    assert row["nas"] == -2.0 and row["label"] == "no" and row["pred"] == "no" and row["layer"] == 0
    assert long[long["id"] == "e2"]["label"].isna().all()  # unknown gold label
    with pytest.raises(ValueError, match="k must be in 1..3"):
        res.top_heads(4)


def test_result_subset_save_load_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    res = toy_result(rng.normal(size=(5, 2, 3)), labels=[1, 0, 1, 0, -1], preds=[1, 1, 0, 0, 1],
                     positions="last", format="No/Yes", model="m", dataset="d", kv_group=[0, 0, 1], meta={"note": "x"})
    sub = res.subset(res.labels == 1)
    assert sub.ids == ["e0", "e2"] and sub.n == 2
    np.testing.assert_array_equal(sub.scores, res.scores[[0, 2]])
    assert res.subset([4, 1]).ids == ["e4", "e1"]
    with pytest.raises(ValueError, match=r"boolean mask must have shape \(5,\)"):
        res.subset([True, False])
    res.save(tmp_path)
    back = NASResult.load(tmp_path)
    np.testing.assert_array_equal(back.scores, res.scores)
    np.testing.assert_array_equal(back.preds, res.preds)
    np.testing.assert_array_equal(back.p_yes, res.p_yes)
    assert back.ids == res.ids and back.labels.tolist() == res.labels.tolist()
    assert (back.positions, back.format, back.model, back.dataset) == ("last", "No/Yes", "m", "d")
    assert back.kv_group.tolist() == [0, 0, 1] and back.meta == {"note": "x"}
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
    with pytest.raises(FileNotFoundError, match="not a NAS result folder"):
        NASResult.load(tmp_path / "missing")


def test_result_rejects_inconsistent_arrays():
    with pytest.raises(ValueError, match=r"scores must be \[example, layer, head\]"):
        NASResult(scores=np.zeros((2, 3)), ids=["a", "b"], labels=[1, 0])
    with pytest.raises(ValueError, match="2 score rows but 1 ids and 2 labels"):
        NASResult(scores=np.zeros((2, 1, 1)), ids=["a"], labels=[1, 0])
    with pytest.raises(ValueError, match="kv_group has 2 entries for 3 heads"):
        NASResult(scores=np.zeros((1, 1, 3)), ids=["a"], labels=[1], kv_group=[0, 1])


# ------------------------------------------------------------------------------------------ analysis


def test_nas_by_group_welch_by_hand():
    from scipy import stats

    # 1 layer x 2 heads; gold yes rows 0-2, gold no rows 3-6
    head0 = [1.0, 2.0, 3.0, 5.0, 6.0, 8.0, 9.0]
    head1 = [0.0, 1.0, 0.5, 0.2, 0.9, 0.4, 0.3]
    scores = np.stack([head0, head1], axis=-1)[:, None, :]
    res = toy_result(scores, labels=[1, 1, 1, 0, 0, 0, 0], preds=[0, 0, 0, 0, 1, 1, 1])
    cmp = nas_by_group(res, by="label")
    a, b = np.array(head0[:3]), np.array(head0[3:])
    va, vb = a.var(ddof=1) / 3, b.var(ddof=1) / 4
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)
    p = 2 * stats.t.sf(abs(t), df)
    assert cmp.n == (3, 4)
    assert cmp.mean[0, 0, 0] == pytest.approx(2.0) and cmp.mean[1, 0, 0] == pytest.approx(7.0)
    assert cmp.t[0, 0] == pytest.approx(t) and cmp.p_value[0, 0] == pytest.approx(p)
    assert cmp.diff[0, 0] == pytest.approx(-5.0)
    table = cmp.table()
    assert list(table.columns[:4]) == ["layer", "head", "mean_yes", "mean_no"]
    assert table.iloc[0]["head"] == 0  # the clear difference sorts first
    long = cmp.to_dataframe()
    assert len(long) == 4 and set(long["group"]) == {"yes", "no"}
    by_pred = nas_by_group(res, by="pred")
    assert by_pred.n == (3, 4) and by_pred.mean[0, 0, 0] == pytest.approx((6 + 8 + 9) / 3)
    with pytest.raises(ValueError, match=r"by must be one of \['label', 'pred'\]"):
        nas_by_group(res, by="answer")
    with pytest.raises(ValueError, match="the result has no predictions"):
        nas_by_group(toy_result(scores), by="pred")
    tiny_group = nas_by_group(toy_result(scores, labels=[1, 0, 0, 0, 0, 0, 0]))
    assert np.isnan(tiny_group.p_value).all()  # one example in a group: no test


def test_condition_correlations_by_hand():
    base = np.arange(6, dtype=float).reshape(1, 2, 3)  # heads ranked 1.2 > 1.1 > 1.0 > 0.2 ...
    scaled = 2 * base + 1
    reversed_ = -base
    noisy = base.copy()
    noisy[0, 1, 2], noisy[0, 0, 0] = -1.0, 10.0  # the top head drops, 0.0 becomes the top
    results = {name: toy_result(np.repeat(s, 2, axis=0)) for name, s in
               [("a", base), ("b", scaled), ("c", reversed_), ("d", noisy)]}
    table = condition_correlations(results, k=2).set_index(["a", "b"])
    assert len(table) == 6
    assert table.loc[("a", "b"), "pearson_r"] == pytest.approx(1.0)
    assert table.loc[("a", "b"), "spearman_r"] == pytest.approx(1.0)
    assert table.loc[("a", "b"), "top_k_overlap"] == 1.0
    assert table.loc[("a", "c"), "spearman_r"] == pytest.approx(-1.0)
    assert table.loc[("a", "c"), "top_k_overlap"] == 0.0
    assert table.loc[("a", "d"), "top_k_overlap"] == 0.5  # top-2 {1.2, 1.1} vs {0.0, 1.1}
    assert set(table.columns) >= {"pearson_p", "spearman_p", "k", "n_heads"}
    with pytest.raises(ValueError, match="needs at least 2 results"):
        condition_correlations({"a": results["a"]})
    with pytest.raises(ValueError, match="layer x head shapes differ"):
        condition_correlations({"a": results["a"], "x": toy_result(np.zeros((2, 3, 3)))})


# ------------------------------------------------------------------------------------------ config, run_scan, CLI


@pytest.mark.parametrize(
    "config, kwargs, message",
    [
        (DataConfig, {"limit": 0}, "limit must be > 0"),
        (ScanConfig, {"batch_size": 0}, "batch_size must be >= 1"),
        (ScanConfig, {"format": "maybe"}, "format must be one of"),
        (DataConfig, {"split": "dev"}, "split must be 'train', 'test' or None"),
        (ScanConfig, {"top_k": 0}, "top_k must be >= 1"),
        (DataConfig, {"data": " "}, "data must name a dataset"),
        (ModelConfig, {"device": "cpu", "device_map": "auto"}, "either device or device_map"),
    ],
)
def test_scan_config_validation(config, kwargs, message):
    base = {"data": "arithmetic"} if config is DataConfig else {}
    with pytest.raises(ValueError, match=message):
        config(**{**base, **kwargs})


def test_run_scan_writes_the_files(tiny, tmp_path):
    cfg = ScanConfig(png=False)
    res = run_scan(cfg, tmp_path, model=tiny, data=list(QUESTIONS[:4]), progress=False)
    csv = pd.read_csv(tmp_path / "nas.csv")
    assert list(csv.columns) == ["layer", "head", "nas_mean", "nas_stderr", "n", "rank"]
    assert len(csv) == tiny.n_layers * tiny.n_heads and (csv["n"] == 4).all()
    assert (csv["layer"].iloc[0], csv["head"].iloc[0]) == res.top_heads(1)[0]
    assert csv["nas_mean"].is_monotonic_decreasing
    np.testing.assert_allclose(csv["nas_mean"].iloc[0], res.mean.max())
    back = NASResult.load(tmp_path)
    np.testing.assert_array_equal(back.scores, res.scores)
    assert back.meta["config"] == cfg.to_dict()  # a loaded model and dataset: no specs to record
    assert back.model == "tiny-random"
    assert (tmp_path / "nas_heatmap.html").is_file() and not (tmp_path / "nas_heatmap.png").exists()


def test_cli_scan(tmp_path, capsys):
    from nasa_lens.cli import main
    from nasa_lens.datasets import Example, write_jsonl

    data = tmp_path / "q.jsonl"
    write_jsonl(data, [Example(q.question, q.label, q.id) for q in QUESTIONS[:4]])
    out = tmp_path / "out"
    rc = main(["scan", "--model", "tiny-random", "--data", str(data), "--positions", "last", "--no-png", "--top", "3", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    csv = pd.read_csv(out / "nas.csv")
    top = f"{csv['layer'].iloc[0]}.{csv['head'].iloc[0]}"
    assert "positions=last" in printed and top in printed and "nas.csv" in printed
    assert NASResult.load(out).positions == "last"
    recorded = NASResult.load(out).meta["config"]  # the model and data specs beside the scan's own fields
    assert (recorded["model"], recorded["data"], recorded["positions"], recorded["top_k"]) == ("tiny-random", str(data), "last", 3)
    rc = main(["scan", "--model", "tiny-random", "--data", str(data), "--limit", "0", "--out", str(out)])
    assert rc == 2 and "limit must be > 0" in capsys.readouterr().err
