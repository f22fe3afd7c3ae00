"""Causal studies on tiny-random: values against hand computations, statistics on synthetic data, result
round-trips, configs and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from nasa_lens import causal
from nasa_lens.datasets import Example
from nasa_lens.evaluate import bias_metrics, predict
from nasa_lens.interventions import HeadAblation
from nasa_lens.prompts import PromptFormat, build_batch

RANK = np.array([[0.1, 0.5, -0.2, 0.9], [0.3, -0.7, 0.8, 0.0]])  # top: 0.3, 1.2, 0.1; bottom: 1.1, 0.2, 1.3


@pytest.fixture(scope="module")
def examples():
    from conftest import QUESTIONS

    return list(QUESTIONS)


@pytest.fixture(scope="module")
def curve(model, examples):
    return causal.ablation_curve(model, examples, RANK, ks=(1, 2), mode="zero", n_random_seeds=2, n_boot=300, n_perm=300,
                                 batch_size=4, progress=False)


# ------------------------------------------------------------------------------------------ statistics


def test_vector_metrics_match_bias_metrics():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (50, 9))
    y[0] = 0  # no gold yes: recall NaN
    p = rng.random((50, 9))
    p[1] = 0.1  # nothing predicted yes: precision NaN
    d = rng.normal(size=(50, 9))
    vec = causal.vector_metrics(y, p, d)
    for i in range(50):
        ref = bias_metrics(y[i], p[i], 0.5, d[i])
        for m, v in vec.items():
            np.testing.assert_allclose(v[i], ref[m], equal_nan=True, rtol=1e-12)


def test_permutation_pvalue_extremes():
    cfg = causal.AblationCurveConfig(n_perm=500)
    rng = np.random.default_rng(1)
    n = 60
    labels = np.tile([1, 0], n // 2)
    p = rng.random(n)
    d = rng.normal(size=n)
    same = causal._perm_pvalues(labels, (p, d), [(p, d), (p, d)], cfg, rng)
    assert same["mean_logit_diff"] == 1.0 and same["yes_rate"] == 1.0  # identical conditions: T = 0
    far = causal._perm_pvalues(labels, (np.full(n, 0.9), d + 5), [(np.full(n, 0.1), d), (np.full(n, 0.2), d - 0.1)], cfg, rng)
    assert far["mean_logit_diff"] < 0.01 and far["yes_rate"] < 0.01


def test_rank_correlation_known_values():
    x = np.arange(10.0)
    assert causal.rank_correlation(x, x**3)["spearman"] == pytest.approx(1.0)
    assert causal.rank_correlation(x, -x)["spearman"] == pytest.approx(-1.0)
    assert np.isnan(causal.rank_correlation(x, np.ones(10))["spearman"])
    with pytest.raises(causal.CausalError, match="cannot correlate arrays of"):
        causal.rank_correlation(x, x[:5])


# ------------------------------------------------------------------------------------------ ablation curve


def test_curve_heads_follow_the_ranking(curve):
    assert curve.heads["top/k=1"] == [(0, 3)]
    assert curve.heads["top/k=2"] == [(0, 3), (1, 2)]
    assert curve.heads["bottom/k=2"] == [(1, 1), (0, 2)]
    for s in range(2):
        rand = curve.heads[f"random/k=2/seed={s}"]
        assert len(rand) == 2 and not set(rand) & {(0, 3), (1, 2)}  # drawn outside the top-k


def test_curve_values_match_a_hand_run(model, examples, curve):
    fmt = PromptFormat()
    labels = np.array([1 if e.label == "yes" else 0 for e in examples])
    p0, d0 = predict(model, examples, fmt, batch_size=4, progress=False)
    np.testing.assert_allclose(curve.clean[1], d0, atol=1e-4)
    # the top-2 condition by hand: full forwards with the ablation hooks
    ab = HeadAblation(((0, 3), (1, 2)), "zero")
    batch = build_batch(model, examples, fmt)
    with torch.no_grad():
        logits = model.bridge.run_with_hooks(batch.input_ids, fwd_hooks=ab.hooks(batch), **batch.forward_kwargs())
    pair = logits[:, -1][:, [batch.answer_yes_id, batch.answer_no_id]]
    d = (pair[:, 0] - pair[:, 1]).numpy()
    np.testing.assert_allclose(curve.outputs["top/k=2"][1], d, atol=1e-4)
    table = curve.to_dataframe()
    row = table[(table["k"] == 2) & (table["condition"] == "top") & (table["metric"] == "mean_logit_diff")].iloc[0]
    assert row["value"] == pytest.approx(d.mean(), abs=1e-4)
    assert row["delta"] == pytest.approx(d.mean() - d0.mean(), abs=1e-4)
    assert row["delta_ci_low"] <= row["delta"] <= row["delta_ci_high"]
    assert 0 < row["p_value"] <= 1
    yes = table[(table["k"] == 2) & (table["condition"] == "top") & (table["metric"] == "yes_rate")].iloc[0]
    assert yes["value"] == bias_metrics(labels, curve.outputs["top/k=2"][0], 0.5)["yes_rate"]


def test_curve_table_layout(curve):
    table = curve.to_dataframe()
    for col in ("k", "condition", "seed", "metric", "value", "ci_low", "ci_high", "delta", "delta_ci_low", "delta_ci_high", "p_value"):
        assert col in table.columns
    assert set(table["condition"]) == {"clean", "top", "bottom", "random", "random_mean"}
    clean = table[table["condition"] == "clean"]
    assert (clean["k"] == 0).all() and (clean["delta"].fillna(0) == 0).all()
    # random_mean is the mean over the seeds
    for m in ("mean_logit_diff", "yes_rate"):
        r = table[(table["k"] == 1) & (table["metric"] == m)]
        assert r[r["condition"] == "random_mean"]["value"].iloc[0] == pytest.approx(r[r["condition"] == "random"]["value"].mean())
    assert table[table["condition"] == "random"]["p_value"].isna().all()
    wide = curve.to_wide()
    assert list(wide[["control", "k"]].itertuples(index=False, name=None))[:3] == [("none", 0), ("top", 1), ("bottom", 1)]
    assert len(wide) == 1 + 2 * (2 + 2)
    summary = curve.summary_table("mean_logit_diff")
    assert list(summary["k"]) == [1, 2] and "p_top_vs_random" in summary


def test_curve_save_load_roundtrip(curve, tmp_path):
    curve.save(tmp_path / "c")
    assert (tmp_path / "c" / "ablation.csv").is_file()
    back = causal.AblationCurveResult.load(tmp_path / "c")
    pd.testing.assert_frame_equal(back.to_dataframe(), curve.to_dataframe(), check_dtype=False)
    np.testing.assert_array_equal(back.outputs["top/k=2"][1], curve.outputs["top/k=2"][1])
    assert back.heads == curve.heads
    with pytest.raises(FileNotFoundError, match="not an ablation-curve folder"):
        causal.AblationCurveResult.load(tmp_path)


def test_curve_mean_mode_and_figure(model, examples):
    from nasa_lens.plots.causal import ablation_curve_figure

    res = causal.ablation_curve(model, examples, RANK, ks=(1,), mode="mean", n_random_seeds=1, n_boot=50, n_perm=50, progress=False)
    assert res.config["mode"] == "mean"
    fig = ablation_curve_figure(res)
    assert len(fig.data) > 0 and "mean" in fig.layout.title.text
    top = next(t for t in fig.data if t.name == "top-k NAS heads")
    assert list(top.x) == [1] and top.y[0] == pytest.approx(res.summary_table("yes_rate")["top_delta"][0])
    bands = [t for t in fig.data if t.fill == "toself"]
    assert bands and all(t.mode == "lines" for t in bands)  # no stray coloured markers on the band outlines


def test_curve_config_errors(model, examples):
    with pytest.raises(causal.CausalError, match="strictly ascending"):
        causal.AblationCurveConfig(ks=(4, 2))
    with pytest.raises(causal.CausalError, match="every k must be >= 1"):
        causal.AblationCurveConfig(ks=(0, 1))
    with pytest.raises(causal.CausalError, match="unknown ablation mode 'half'"):
        causal.AblationCurveConfig(mode="half")
    with pytest.raises(causal.CausalError, match="unknown metrics \\['auc'\\]"):
        causal.AblationCurveConfig(metrics=("auc",))
    with pytest.raises(causal.CausalError, match="k=9 is more than the model's 8 heads"):
        causal.ablation_curve(model, examples, RANK, ks=(9,), progress=False)
    with pytest.raises(causal.CausalError, match=r"has shape \(3, 4\) but the model has 2 layers x 4 heads"):
        causal.ablation_curve(model, examples, np.zeros((3, 4)), ks=(1,), progress=False)
    with pytest.raises(causal.CausalError, match="either config or keyword options"):
        causal.ablation_curve(model, examples, RANK, config=causal.AblationCurveConfig(), n_boot=3)


# ------------------------------------------------------------------------------------------ effect sweep


@pytest.fixture(scope="module")
def sweeps(model, examples):
    ex = causal.effect_sweep(model, examples, causal.EffectSweepConfig(method="exact", positions="all", batch_size=3), progress=False)
    at = causal.effect_sweep(model, examples, causal.EffectSweepConfig(method="attribution", positions="all", batch_size=3), progress=False)
    return ex, at


def test_exact_effect_matches_a_full_forward(model, examples, sweeps):
    ex, _ = sweeps
    batch = build_batch(model, examples)
    with torch.no_grad():
        clean = model.bridge(batch.input_ids, **batch.forward_kwargs())[:, -1]
        abl = model.bridge.run_with_hooks(batch.input_ids, fwd_hooks=HeadAblation(((1, 2),)).hooks(batch),
                                          **batch.forward_kwargs())[:, -1]
    y, n = batch.answer_yes_id, batch.answer_no_id
    per_example = ((abl[:, y] - abl[:, n]) - (clean[:, y] - clean[:, n])).numpy()
    np.testing.assert_allclose(ex.per_example[:, 1, 2], per_example, atol=1e-4)
    assert ex.effects[1, 2] == pytest.approx(per_example.mean(), abs=1e-4)


def test_attribution_tracks_exact_and_leaves_the_model_alone(model, examples, sweeps):
    ex, at = sweeps
    stats = causal.sweep_correlation(ex, at, top_k=3)
    assert stats["spearman"] > 0.8  # tiny-random: near-linear, the gradient approximation ranks heads alike
    np.testing.assert_allclose(at.clean_logit_diff, ex.clean_logit_diff, atol=1e-4)
    assert all(not p.requires_grad and p.grad is None for p in model.bridge.parameters())
    batch = build_batch(model, examples[:2])
    with torch.no_grad():
        a = model.bridge(batch.input_ids, **batch.forward_kwargs())
    causal.attribution_effects(model, examples[:2], progress=False)
    with torch.no_grad():
        b = model.bridge(batch.input_ids, **batch.forward_kwargs())
    assert torch.equal(a, b)


def test_attribution_zero_mode_is_first_order_exact_for_small_edits(model, examples):
    """Scaling a head's z by (1 - eps) changes the logit diff by eps * attribution(zero) to first order."""
    swapped = examples[:2][::-1]  # attribution sees the two examples in the other order than the batch below
    at = causal.attribution_effects(model, swapped, progress=False)
    eps = 1e-3

    def shrink(z, hook):
        z = z.clone()
        z[:, :, 1] *= 1 - eps
        return z

    batch = build_batch(model, examples[:2])
    with torch.no_grad():
        clean = model.bridge(batch.input_ids, **batch.forward_kwargs())[:, -1]
        edit = model.bridge.run_with_hooks(batch.input_ids, fwd_hooks=[("blocks.0.attn.hook_z", shrink)], **batch.forward_kwargs())[:, -1]
    y, n = batch.answer_yes_id, batch.answer_no_id
    change = ((edit[:, y] - edit[:, n]) - (clean[:, y] - clean[:, n])).double().numpy()
    order = [swapped.index(e) for e in examples[:2]]  # batch row -> row of the attribution result
    assert order == [1, 0]
    assert abs(change[0] - change[1]) > 1e-3 * eps  # the two rows differ, so a wrong order would fail
    np.testing.assert_allclose(change / eps, at.per_example[order, 0, 1], rtol=0.05, atol=2e-3)


def test_sweep_results_roundtrip_and_tables(sweeps, tmp_path):
    ex, at = sweeps
    ex.save(tmp_path)
    back = causal.EffectSweepResult.load(tmp_path, "effects_exact")
    np.testing.assert_array_equal(back.per_example, ex.per_example)
    frame = ex.to_dataframe()
    assert len(frame) == 8 and frame.loc[frame["rank"] == 1, "head_name"].iloc[0] == "%d.%d" % ex.top_heads(1)[0]
    table = causal.nas_effect_table(RANK, ex)
    assert table.loc[table["nas_rank"] == 1, "head_name"].iloc[0] == "0.3"
    assert table["nas"].tolist() == RANK.ravel().tolist()
    with pytest.raises(causal.CausalError, match="unknown sweep method 'guess'"):
        causal.EffectSweepConfig(method="guess")


# ------------------------------------------------------------------------------------------ patching


def test_patching_identical_pairs_changes_nothing(model, examples):
    fmt = PromptFormat()
    pairs = causal.PairSet(examples[:3], examples[:3], fmt, fmt, "identity")
    res = causal.patch_head_outputs(model, pairs, heads=[(0, 1), (1, 3)], progress=False)
    np.testing.assert_allclose(res.patched[:, 0, 1], res.corrupted, atol=1e-5)
    np.testing.assert_allclose(res.patched[:, 1, 3], res.corrupted, atol=1e-5)
    assert np.isnan(res.patched[:, 0, 0]).all()  # not requested


def test_patching_agrees_with_transformer_lens_on_an_unpadded_batch(model):
    """TransformerLens' generic_activation_patch works on a bridge only without padding; there it agrees."""
    from transformer_lens.patching import generic_activation_patch, layer_head_vector_patch_setter

    qs = [Example("Is 7 a prime number?", "yes", "a"), Example("Is 8 a prime number?", "no", "b")]
    pairs = causal.swap_pairs(qs)
    ours = causal.patch_head_outputs(model, pairs, progress=False)
    clean = build_batch(model, qs, pairs.clean_fmt)
    corrupted = build_batch(model, qs, pairs.corrupted_fmt)
    assert bool(clean.attention_mask.all()) and clean.input_ids.shape == corrupted.input_ids.shape
    _, cache = model.bridge.run_with_cache(clean.input_ids)
    y, n = clean.answer_yes_id, clean.answer_no_id
    tl = generic_activation_patch(model.bridge, corrupted.input_ids, cache, lambda lg: lg[:, -1, y] - lg[:, -1, n],
                                  layer_head_vector_patch_setter, "z", index_axis_names=["layer", "head"], reduce="none")
    theirs = tl.values.permute(2, 0, 1).numpy()  # [layer, head, batch] -> [batch, layer, head]
    np.testing.assert_allclose(ours.patched, theirs, atol=1e-4)


def test_patching_result_normalisation_by_hand(tmp_path):
    patched = np.zeros((4, 1, 2))
    patched[:, 0, 0] = [1.0, 2.0, 1.0, 2.0]  # mean 1.5
    patched[:, 0, 1] = [0.0, 0.0, 0.0, 0.0]
    res = causal.PatchingResult(patched, clean=np.full(4, 3.0), corrupted=np.zeros(4), what="z", kind="swap", n_boot=200, n_perm=200)
    np.testing.assert_allclose(res.normalized(), [[0.5, 0.0]])
    frame = res.to_dataframe()
    assert frame["normalized"].tolist() == [0.5, 0.0]
    assert frame.loc[0, "ci_low"] <= 0.5 <= frame.loc[0, "ci_high"]
    assert frame.loc[0, "p_value"] == pytest.approx(2 / 16)  # exact two-sided sign-flip test: all + or all - of 16
    res.save(tmp_path)
    np.testing.assert_array_equal(causal.PatchingResult.load(tmp_path).patched, patched)


def test_label_pairs_match_length_and_flip_the_label(model):
    qs = [Example("Is 17 a prime number?", "yes", "prime-0000"), Example("Is 15 a prime number?", "no", "prime-0001"),
          Example("Is 19 a prime number?", "yes", "prime-0002"), Example("Is 21 a prime number?", "no", "prime-0003"),
          Example("Is 1000003 a prime number?", "yes", "prime-0004")]
    pairs = causal.label_pairs(model, qs)
    assert len(pairs) == 2
    for c, x in zip(pairs.clean, pairs.corrupted):
        assert c.label == "yes" and x.label == "no"
        assert build_batch(model, [c]).seq_len == build_batch(model, [x]).seq_len
    with pytest.raises(causal.CausalError, match="no label pairs"):
        causal.label_pairs(model, qs[:1] + qs[4:])


def test_patching_config_errors():
    with pytest.raises(causal.CausalError, match="unknown pairs 'random'"):
        causal.PatchingConfig(pairs="random")
    with pytest.raises(causal.CausalError, match="unknown patch target 'q'"):
        causal.PatchingConfig(what="q")
    with pytest.raises(causal.CausalError, match="max_pairs must be >= 1"):
        causal.PatchingConfig(max_pairs=0)


# ------------------------------------------------------------------------------------------ ranking, ablate, CLI


def test_ranking_from_nas_csv(tmp_path, model):
    frame = pd.DataFrame([{"layer": layer, "head": h, "nas_mean": RANK[layer, h], "nas_stderr": 0.1, "n": 5, "rank": 0}
                          for layer in range(2) for h in range(4)])
    frame.to_csv(tmp_path / "nas.csv", index=False)
    np.testing.assert_array_equal(causal.ranking_from_csv(tmp_path), RANK)
    np.testing.assert_array_equal(causal.ranking_array(str(tmp_path / "nas.csv"), model), RANK)
    frame.drop(columns="nas_mean").to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(causal.CausalError, match="expected columns layer, head and nas_mean"):
        causal.ranking_from_csv(tmp_path / "bad.csv")
    with pytest.raises(FileNotFoundError, match="missing not found: pass a scan folder"):
        causal.ranking_from_csv(tmp_path / "missing")


def test_ablate_before_after(model, examples):
    res = causal.ablate(model, examples, causal.AblationConfig(heads="top:2", n_boot=50), ranking=RANK, progress=False)
    assert res.heads == [(0, 3), (1, 2)]
    p0, d0 = predict(model, examples, batch_size=16, progress=False)
    assert res.before.metrics["mean_logit_diff"] == pytest.approx(d0.mean(), abs=1e-4)
    blob = res.to_json()
    assert blob["heads"] == [[0, 3], [1, 2]] and blob["mode"] == "zero"
    assert blob["delta"]["mean_logit_diff"] == pytest.approx(res.after.metrics["mean_logit_diff"] - res.before.metrics["mean_logit_diff"])
    with pytest.raises(causal.CausalError, match="unknown ablation mode 'half'"):
        causal.AblationConfig(mode="half")
    with pytest.raises(causal.CausalError, match="a NAS ranking is needed"):
        causal.ablate(model, examples, causal.AblationConfig(heads="top:2"), progress=False)


@pytest.fixture()
def jsonl(tmp_path, examples):
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps({"id": e.id, "question": e.question, "label": e.label}) + "\n" for e in examples))
    return path


def test_cli_ablate_writes_metrics(jsonl, tmp_path, capsys):
    from nasa_lens.cli import main

    nas_dir = tmp_path / "scan"
    nas_dir.mkdir()
    pd.DataFrame([{"layer": layer, "head": h, "nas_mean": RANK[layer, h]} for layer in range(2) for h in range(4)]).to_csv(
        nas_dir / "nas.csv", index=False)
    out = tmp_path / "abl"
    assert main(["ablate", "--model", "tiny-random", "--data", str(jsonl), "--heads", "top:2", "--nas", str(nas_dir),
                 "--mode", "mean", "--out", str(out)]) == 0
    blob = json.loads((out / "metrics.json").read_text())
    assert blob["heads"] == [[0, 3], [1, 2]] and blob["mode"] == "mean"
    for key in ("accuracy", "recall", "pr_gap", "yes_rate", "mean_logit_diff", "n"):
        assert key in blob["before"] and key in blob["after"]
    assert blob["before"]["n"] == 6
    assert "ablated 2 heads (mean): 0.3,1.2" in capsys.readouterr().out
    assert main(["ablate", "--model", "tiny-random", "--data", str(jsonl), "--heads", "0.9", "--out", str(out)]) == 2
    assert "head 9 out of range" in capsys.readouterr().err


def test_cli_patch_writes_table_and_heatmap(jsonl, tmp_path):
    from nasa_lens.cli import main

    out = tmp_path / "patch"
    assert main(["patch", "--model", "tiny-random", "--data", str(jsonl), "--what", "pattern", "--max-pairs", "2",
                 "--no-png", "--out", str(out)]) == 0
    table = pd.read_csv(out / "patching.csv")
    assert len(table) == 8 and set(table["what"]) == {"pattern"} and set(table["n"]) == {2}
    assert (out / "patching_heatmap.html").is_file()
