"""Head-set effects and the per-head sweep on the suffix runner (tiny-random): values against full forwards,
the whole-prompt sweep against the sweep as it ran before, resuming from per-batch partial results, and the
``nasa-lens sweep`` command (files, bad input refused before the model loads)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from nasa_lens import causal
from nasa_lens.causal.headsets import run_ablations
from nasa_lens.interventions import HeadAblation, collect_z_reference
from nasa_lens.prompts import PromptFormat, build_batch, iter_batches


@pytest.fixture(scope="module")
def examples():
    from conftest import QUESTIONS

    return list(QUESTIONS)


def full_effects(model, examples, ablation, batch_size=3):
    """Per example: ablated minus clean logit difference from full forwards (the reference)."""
    out = np.full(len(examples), np.nan)
    for idx, batch in iter_batches(model, examples, None, batch_size):
        with torch.no_grad():
            clean = model.bridge(batch.input_ids, **batch.forward_kwargs())[:, -1]
            abl = model.bridge.run_with_hooks(batch.input_ids, fwd_hooks=ablation.hooks(batch), **batch.forward_kwargs())[:, -1]
        y, n = batch.answer_yes_id, batch.answer_no_id
        out[idx] = ((abl[:, y] - abl[:, n]) - (clean[:, y] - clean[:, n])).double().numpy()
    return out


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_head_set_effects_equal_full_forwards(tiny, examples, mode):
    sets = [[(1, 2)], [(0, 1), (1, 3)], [(0, 0), (0, 2), (1, 1)]]
    ref = collect_z_reference(tiny, examples, batch_size=3, pool_size=6, progress=False) if mode == "mean" else None
    res = causal.head_set_effects(tiny, examples, sets, mode=mode, reference=ref, batch_size=3, progress=False)
    assert res.effects.shape == (3, len(examples)) and res.positions == "after"
    for s, heads in enumerate(sets):
        want = full_effects(tiny, examples, HeadAblation(tuple(heads), mode, ref, positions="after"))
        assert np.abs(want).max() > 1e-3
        np.testing.assert_allclose(res.effects[s], want, atol=1e-5, rtol=0)
    every = causal.head_set_effects(tiny, examples, sets[:1], mode=mode, reference=ref, positions="all", batch_size=3,
                                    progress=False)
    np.testing.assert_allclose(every.effects[0], full_effects(tiny, examples, HeadAblation(tuple(sets[0]), mode, ref)),
                               atol=1e-5, rtol=0)
    frame = res.to_dataframe()
    assert list(frame.columns) == ["set", "heads", "id", "effect", "clean_logit_diff"] and len(frame) == 3 * len(examples)


def test_head_set_effects_round_trip(tiny, examples, tmp_path):
    res = causal.head_set_effects(tiny, examples, [[(1, 2)], [(0, 3)]], batch_size=4, progress=False)
    back = causal.HeadSetEffects.load(res.save(tmp_path))
    np.testing.assert_array_equal(back.effects, res.effects)
    assert back.head_sets == res.head_sets and back.ids == res.ids


def test_whole_prompt_sweep_equals_the_full_forward_sweep(tiny, examples):
    new = causal.exact_effects(tiny, examples, positions="all", batch_size=4, progress=False)
    old = causal.exact_effects_full_forward(tiny, examples, batch_size=4, progress=False)
    np.testing.assert_allclose(new.per_example, old.per_example, atol=1e-5, rtol=0)
    np.testing.assert_allclose(new.clean_logit_diff, old.clean_logit_diff, atol=1e-6, rtol=0)


def test_suffix_sweep_differs_from_every_position_where_heads_act_early(tiny, examples):
    after = causal.effect_sweep(tiny, examples, causal.EffectSweepConfig(positions="after", batch_size=6), progress=False)
    every = causal.effect_sweep(tiny, examples, causal.EffectSweepConfig(positions="all", batch_size=6), progress=False)
    assert after.positions == "after" and every.positions == "all"
    # layer 1 is the last layer: its heads can only act on the answer through the positions it writes at,
    # and only the answer position is read out, so suffix and every-position ablation agree there
    np.testing.assert_allclose(after.per_example[:, 1], every.per_example[:, 1], atol=1e-5)
    assert np.abs(after.per_example[:, 0] - every.per_example[:, 0]).max() > 1e-4  # layer 0 also acts before


class _Interrupt(Exception):
    pass


class _Flaky:
    """An ablation whose hooks raise the first time (a kill in the middle of a batch)."""

    def __init__(self, ablation, fail):
        self.ablation, self.fail = ablation, fail
        self.first_layer = ablation.first_layer

    def hooks(self, batch):
        if self.fail:
            self.fail = False
            raise _Interrupt
        return self.ablation.hooks(batch)


def test_run_ablations_resumes_from_partial_results(tiny, examples, tmp_path, monkeypatch):
    heads = [(layer, h) for layer in range(2) for h in range(4)]
    abl = [HeadAblation((hd,), positions="after") for hd in heads]
    want_clean, want = run_ablations(tiny, examples, None, abl, "after", batch_size=3, progress=False)
    partial = tmp_path / "partial"
    flaky = [_Flaky(a, fail=(j == 6)) for j, a in enumerate(abl)]  # layer 0 of the first batch is saved first
    with pytest.raises(_Interrupt):
        run_ablations(tiny, examples, None, flaky, "after", batch_size=3, partial=partial, progress=False)
    files = sorted(partial.glob("batch-*.npz"))
    assert len(files) == 1
    with np.load(files[0]) as z:
        assert sorted(z["which"].tolist()) == [0, 1, 2, 3]  # layer 0's heads of the first batch
    calls = []
    real = causal.SuffixRunner.diff

    def counting(self, hooks, start_layer=None):
        calls.append(start_layer)
        return real(self, hooks, start_layer)

    monkeypatch.setattr(causal.SuffixRunner, "diff", counting)
    clean, got = run_ablations(tiny, examples, None, abl, "after", batch_size=3, partial=partial, progress=False)
    assert len(calls) == 2 * 8 - 4  # the 4 saved heads are not run again
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(clean, want_clean, atol=1e-6)
    calls.clear()
    run_ablations(tiny, examples, None, abl, "after", batch_size=3, partial=partial, progress=False)
    assert calls == []  # everything saved: no clean run, no head run


def test_sweep_config_validates():
    with pytest.raises(causal.CausalError, match="positions"):
        causal.EffectSweepConfig(positions="before")
    with pytest.raises(causal.CausalError, match="top/bottom need a NAS ranking"):
        causal.EffectSweepConfig(heads="top:3")
    with pytest.raises(causal.CausalError, match="--heads"):
        causal.EffectSweepConfig(heads="1.x")
    assert causal.EffectSweepConfig(heads="random:4:2").heads == "random:4:2"


def test_sweep_command_writes_its_files(tmp_path, capsys):
    from nasa_lens.cli import main

    out = tmp_path / "sweep"
    code = main(["sweep", "--model", "tiny-random", "--data", "arithmetic", "--limit", "6", "--heads", "1.2,0.3,1.0",
                 "--mode", "mean", "--positions", "after", "--out", str(out), "--batch-size", "4", "--no-png"])
    assert code == 0
    effects = pd.read_csv(out / "effects.csv")
    assert list(effects.columns) == ["layer", "head", "effect_mean", "effect_stderr", "n"]
    assert sorted(zip(effects["layer"], effects["head"])) == [(0, 3), (1, 0), (1, 2)] and (effects["n"] == 6).all()
    by_ex = pd.read_csv(out / "effects_by_example.csv")
    assert list(by_ex.columns) == ["id", "layer", "head", "effect"] and len(by_ex) == 18
    means = by_ex.groupby(["layer", "head"])["effect"].mean()
    np.testing.assert_allclose(effects.set_index(["layer", "head"])["effect_mean"].loc[means.index], means, rtol=1e-9)
    meta = json.loads((out / "sweep.json").read_text())
    for key in ("model", "dataset", "split", "mode", "positions", "method", "format", "n", "seconds"):
        assert key in meta
    assert (meta["model"], meta["dataset"], meta["mode"], meta["positions"], meta["method"], meta["format"], meta["n"]) == (
        "tiny-random", "arithmetic", "mean", "after", "exact", "yes-no", 6)
    assert (out / "sweep_heatmap.html").is_file()
    assert not (out / "sweep.partial").exists()  # removed once the sweep is written
    back = causal.EffectSweepResult.read_sweep(out)
    np.testing.assert_allclose(back.effects[1, 2], effects.set_index(["layer", "head"]).loc[(1, 2), "effect_mean"])


@pytest.mark.parametrize("argv, words", [
    (["--positions", "before"], "unknown positions 'before'"),
    (["--heads", "top:3"], "top/bottom need a NAS ranking"),
    (["--heads", "1.2,1.2"], "names a head twice"),
    (["--data", "no-such-data"], "no-such-data"),
])
def test_sweep_command_refuses_bad_input_before_loading(tmp_path, capsys, monkeypatch, argv, words):
    from nasa_lens import models
    from nasa_lens.cli import main

    def no_load(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(models, "load_model", no_load)
    base = {"--model": "tiny-random", "--data": "arithmetic", "--limit": "6", "--out": str(tmp_path / "o")}
    for flag, value in zip(argv[::2], argv[1::2]):
        base[flag] = value
    args = ["sweep", *[x for kv in base.items() for x in kv]]
    try:
        code = main(args)
    except SystemExit as exc:  # argparse choices
        code = exc.code
    assert code == 2
    assert words in capsys.readouterr().err


def test_ablate_and_ablation_curve_take_positions(tiny, examples):
    heads = [(1, 2), (0, 3)]
    want = causal.head_set_effects(tiny, examples, [heads], batch_size=3, progress=False).effects[0]
    res = causal.ablate(tiny, examples, causal.AblationConfig(heads="1.2,0.3", positions="after", n_boot=10, batch_size=3),
                        progress=False)
    got = res.after.to_dataframe()["logit_diff"].to_numpy() - res.before.to_dataframe()["logit_diff"].to_numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)
    every = causal.ablate(tiny, examples, causal.AblationConfig(heads="1.2,0.3", n_boot=10, batch_size=3), progress=False)
    got_all = every.after.to_dataframe()["logit_diff"].to_numpy() - every.before.to_dataframe()["logit_diff"].to_numpy()
    np.testing.assert_allclose(got_all, full_effects(tiny, examples, HeadAblation(tuple(heads))), atol=1e-5)
    assert np.abs(got_all - got).max() > 1e-4
    rank = np.array([[0.1, 0.5, -0.2, 0.9], [0.3, -0.7, 0.8, 0.0]])
    curve = causal.ablation_curve(tiny, examples, rank, ks=(1, 2), n_random_seeds=1, n_boot=20, n_perm=20, batch_size=3,
                                  positions="after", progress=False)
    top2 = curve.outputs["top/k=2"][1] - curve.clean[1]  # top 2 by the ranking: 0.3 and 1.2
    np.testing.assert_allclose(top2, want, atol=1e-6)
    with pytest.raises(causal.CausalError, match="positions"):
        causal.AblationConfig(positions="first")


def test_bootstrap_rank_correlation_point_and_interval():
    """Spearman of the per-head means, its bounds bracket it, they shrink with cleaner data, and the same seed
    gives the same interval; a score that only reverses the effect gives -1 on every resample."""
    rng = np.random.default_rng(1)
    truth = np.linspace(-1, 1, 40)
    effect = truth + rng.normal(0, 1.0, (200, 40))
    noisy = truth + rng.normal(0, 3.0, (200, 40))
    clean = truth + rng.normal(0, 0.3, (200, 40))
    r_noisy = causal.bootstrap_rank_correlation(effect, noisy, n_boot=200, seed=0)
    r_clean = causal.bootstrap_rank_correlation(effect, clean, n_boot=200, seed=0)
    from scipy import stats

    assert r_clean["spearman"] == pytest.approx(stats.spearmanr(effect.mean(0), clean.mean(0)).statistic)
    for r in (r_noisy, r_clean):
        assert r["lo"] < r["hi"] and r["n_questions"] == 200 and r["n_heads"] == 40
    assert r_clean["hi"] - r_clean["lo"] < r_noisy["hi"] - r_noisy["lo"]
    assert r_clean["lo"] > 0.9
    assert causal.bootstrap_rank_correlation(effect, noisy, n_boot=200, seed=0) == r_noisy
    flipped = causal.bootstrap_rank_correlation(effect, -effect, n_boot=50, seed=3)
    assert flipped["spearman"] == pytest.approx(-1) and flipped["hi"] == pytest.approx(-1)
    with pytest.raises(causal.CausalError, match="one shape"):
        causal.bootstrap_rank_correlation(effect, noisy[:, :3])
