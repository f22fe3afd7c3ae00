"""NASA on tiny-random: only the selected rows move, the grouped-query key rule, exact adapter round trips,
refused adapters, resume == uninterrupted, determinism, the loss goes down, the model is restored (also after
an exception), the NAS-alignment term, the threshold baseline, the comparison table and the CLI."""
from __future__ import annotations

import dataclasses
import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import QUESTIONS

from nasa_lens.adapters import ADAPTER_FILE, ADAPTER_META_FILE, AdapterError, HeadAdapter, load_adapter, projection_module
from nasa_lens.datasets import Example
from nasa_lens.evaluate import answer_logits
from nasa_lens.ability import NEUTRAL_TEXT, arithmetic_accuracy, arithmetic_items, lm_loss
from nasa_lens.debias import ComparisonResult, compare_methods, fit_threshold
from nasa_lens.finetune import (
    NASAConfig,
    BalancedBatches,
    batch_loss,
    holdout_split,
    hooks_remaining,
    key_groups_for,
    nas_targets,
    train_nasa,
)
from nasa_lens.prompts import build_batch

# tiny-random: 2 layers, 4 query heads, 2 KV heads (group 0 = heads 0,1; group 1 = heads 2,3), d_head 16, d_model 64

TRAIN = [Example(q.question, q.label, f"{q.id}_{i}") for i, q in enumerate(QUESTIONS * 2)]
VAL = list(QUESTIONS)


def small(**kw) -> NASAConfig:
    base = dict(heads="0.0,0.1,1.2", steps=4, batch_size=4, eval_every=2, lr=3e-2, progress=False, n_boot=20, eval_batch_size=8)
    return NASAConfig(**{**base, **kw})


def check_after_test(item) -> None:
    """Run by conftest after every test of this module: a hook left on the shared model fails that test."""
    m = item.funcargs.get("model")
    if m is not None:
        assert not hooks_remaining(m), f"{item.name} left hooks attached: {hooks_remaining(m)}"


@pytest.fixture(scope="module")
def trained(model):
    """One short run with key rows: group (0, 0) is complete (heads 0.0 and 0.1), group (1, 1) is not (1.2 only)."""
    with pytest.warns(UserWarning, match=r"skipped the key rows of KV groups 1\.1"):
        return train_nasa(model, TRAIN, VAL, small(train_k=True))


def state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.bridge.named_parameters()}


def q_name(layer: int, kind: str = "q") -> str:
    return f"model.layers.{layer}._original_component.self_attn._original_component.{kind}_proj._original_component.weight"


# ------------------------------------------------------------------------------------------ restriction


def test_only_selected_rows_change_in_merged_weights(model, trained):
    assert trained.heads == [(0, 0), (0, 1), (1, 2)]
    assert trained.key_groups == [(0, 0)] and trained.skipped_key_groups == [(1, 1)]
    before = state(model)
    trained.adapter.merge(model)
    try:
        after = state(model)
    finally:
        trained.adapter.remove()
    restored = state(model)
    dh = model.d_head
    allowed = {q_name(0): [0, 1], q_name(1): [2], q_name(0, "k"): [0]}
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert sorted(changed) == sorted(allowed)  # every other parameter is bitwise identical
    for name, units in allowed.items():
        rows_changed = (before[name] != after[name]).any(dim=1)
        expect = torch.zeros_like(rows_changed)
        for u in units:
            expect[u * dh : (u + 1) * dh] = True
        assert torch.equal(rows_changed, expect), name  # exactly the unit's d_head rows, all of them
    # the merged delta is the adapter's delta, and remove() restores the base bitwise
    delta = trained.adapter.delta("q", 1, 2).detach()
    assert torch.allclose(after[q_name(1)][2 * dh : 3 * dh] - before[q_name(1)][2 * dh : 3 * dh], delta, atol=1e-6)
    assert all(torch.equal(before[k], restored[k]) for k in before)
    assert trained.n_params == 4 * dh * 64  # three q heads + one k group, [16, 64] each


def test_base_weights_untouched_and_frozen_after_training(model):
    from nasa_lens.models import weights_hash

    before = weights_hash(model)
    with pytest.warns(UserWarning, match=r"also moves unselected heads 1\.2"):
        fresh = train_nasa(model, TRAIN, None, small(steps=2, heads="1.3", train_k=True, key_rule="any"))
    assert weights_hash(model) == before
    assert all(not p.requires_grad for p in model.bridge.parameters())
    assert fresh.before is None and fresh.after is None  # no validation without validation data
    assert float(fresh.adapter.delta("k", 1, 1).abs().sum()) > 0  # it did train


def test_gqa_key_rule_complete_warns_and_skips(model):
    with pytest.warns(UserWarning, match=r"skipped the key rows of KV groups 0\.1, 1\.0.*grouped-query"):
        trained, skipped = key_groups_for(model, [(0, 2), (1, 0)], train_k=True)
    assert trained == [] and skipped == [(0, 1), (1, 0)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # complete groups: no warning
        trained, skipped = key_groups_for(model, [(1, 2), (1, 3), (0, 0), (0, 1)], train_k=True)
    assert trained == [(0, 0), (1, 1)] and skipped == []
    assert key_groups_for(model, [(1, 2)], train_k=False) == ([], [])
    with pytest.warns(UserWarning, match=r"also moves unselected heads 1\.3"):
        trained, skipped = key_groups_for(model, [(1, 2)], train_k=True, key_rule="any")
    assert trained == [(1, 1)] and skipped == []


# ------------------------------------------------------------------------------------------ adapters


def test_adapter_round_trip_reproduces_logits_exactly(model, trained, tmp_path):
    batch = build_batch(model, VAL)
    with torch.no_grad(), trained.adapter.applied(model):
        want = answer_logits(model, batch)
        want_full = model.bridge(batch.input_ids, attention_mask=batch.attention_mask)
    with torch.no_grad():
        base = answer_logits(model, batch)
    assert not torch.equal(want, base)  # the adapter does something
    trained.save(tmp_path / "run", model)
    assert {p.name for p in (tmp_path / "run").iterdir()} >= {ADAPTER_FILE, ADAPTER_META_FILE, "metrics.json", "history.csv"}
    loaded = load_adapter(model, tmp_path / "run" / ADAPTER_FILE)  # persistent until remove()
    try:
        assert loaded.state == "hooked" and loaded.heads == trained.heads and loaded.key_groups == trained.key_groups
        model.bridge.reset_hooks()  # another tool clearing bridge hooks does not drop the adapter
        with torch.no_grad():
            got = answer_logits(model, batch)
            got_full = model.bridge(batch.input_ids, attention_mask=batch.attention_mask)
        assert torch.equal(got, want) and torch.equal(got_full, want_full)
        with pytest.raises(AdapterError, match="already hooked"):
            loaded.attach(model)
    finally:
        loaded.remove()
    with torch.no_grad():
        assert torch.equal(answer_logits(model, batch), base)
    assert not hooks_remaining(model)
    # merged: equal up to float rounding (x @ (W + D).T vs x @ W.T + x @ D.T), and remove() is exact
    merged = load_adapter(model, tmp_path / "run", mode="merge")
    try:
        with torch.no_grad():
            assert torch.allclose(answer_logits(model, batch), want, atol=1e-4)
        assert model.extra["nasa_adapters"] == [merged]
    finally:
        merged.remove()
    with torch.no_grad():
        assert torch.equal(answer_logits(model, batch), base)
    meta = json.loads((tmp_path / "run" / ADAPTER_META_FILE).read_text())
    assert meta["heads"] == ["0.0", "0.1", "1.2"] and meta["key_groups"] == ["0.0"] and meta["skipped_key_groups"] == ["1.1"]
    assert meta["config"]["train_k"] is True and meta["base_model"] == "tiny-random"


def test_low_rank_adapter_round_trip(model, tmp_path):
    res = train_nasa(model, TRAIN, None, small(rank=2, steps=2, heads="1.0"))
    assert res.n_params == 16 * 2 + 2 * 64
    assert torch.linalg.matrix_rank(res.adapter.delta("q", 1, 0).detach()) <= 2
    res.save(tmp_path, model)
    batch = build_batch(model, VAL[:3])
    with torch.no_grad(), res.adapter.applied(model):
        want = answer_logits(model, batch)
    loaded = load_adapter(model, tmp_path)
    try:
        with torch.no_grad():
            assert torch.equal(answer_logits(model, batch), want)
    finally:
        loaded.remove()


@pytest.fixture()
def saved(model, trained, tmp_path):
    trained.save(tmp_path, model)
    return tmp_path


def _edit_meta(folder, **changes):
    path = folder / ADAPTER_META_FILE
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


def test_adapter_refuses_other_model_name(model, saved):
    other = dataclasses.replace(model, name="smollm2-135m-instruct", extra={})
    with pytest.raises(AdapterError, match=r"trained on base model 'tiny-random', not on 'smollm2-135m-instruct'"):
        load_adapter(other, saved)


def test_adapter_refuses_other_base_weights(model, saved):
    weight = projection_module(model, 1, "q").weight
    original = weight[0, 0].item()
    with torch.no_grad():
        weight[0, 0] += 1.0
    try:
        with pytest.raises(AdapterError, match=r"trained on other weights of 'tiny-random': base weights hash"):
            load_adapter(model, saved)
    finally:
        with torch.no_grad():
            weight[0, 0] = original
    loaded = load_adapter(model, saved)  # same weights again: accepted
    loaded.remove()


def test_adapter_refuses_heads_out_of_range(model, saved):
    _edit_meta(saved, heads=["0.0", "7.1"])
    with pytest.raises(AdapterError, match=r"names a head the model 'tiny-random' does not have: .*layer 7 out of range"):
        load_adapter(model, saved)
    _edit_meta(saved, heads=["0.0", "0.9"])
    with pytest.raises(AdapterError, match=r"head 9 out of range"):
        load_adapter(model, saved)


def test_adapter_refuses_corrupt_files(model, saved):
    tensor_file = saved / ADAPTER_FILE
    data = tensor_file.read_bytes()
    tensor_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(AdapterError, match=rf"adapter tensor file {tensor_file} is corrupt or truncated"):
        load_adapter(model, saved)
    tensor_file.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # same size, one byte flipped
    with pytest.raises(AdapterError, match=r"is corrupt or truncated: its sha256 does not match adapter.json"):
        load_adapter(model, saved)
    (saved / ADAPTER_META_FILE).write_text("{not json")
    with pytest.raises(AdapterError, match=rf"adapter metadata {saved / ADAPTER_META_FILE} is corrupt"):
        load_adapter(model, saved)
    with pytest.raises(FileNotFoundError, match=r"no adapter at .*nowhere: expected a folder holding adapter.safetensors"):
        load_adapter(model, saved / "nowhere")
    assert not hooks_remaining(model)


def test_adapter_construction_errors(model):
    from nasa_lens.adapters import model_shape

    shape = model_shape(model)
    with pytest.raises(AdapterError, match=r"head 2\.0 out of range"):
        HeadAdapter([(2, 0)], shape=shape)
    with pytest.raises(AdapterError, match="rank must be a positive int"):
        HeadAdapter([(0, 0)], shape=shape, rank=0)
    with pytest.raises(AdapterError, match="listed twice"):
        HeadAdapter([(0, 0), (0, 0)], shape=shape)
    with pytest.raises(AdapterError, match="at least one head"):
        HeadAdapter([], shape=shape)


# ------------------------------------------------------------------------------------------ loop


def _deltas(result) -> dict[str, torch.Tensor]:
    return result.adapter.to_tensors()


def test_training_is_deterministic(model):
    a = train_nasa(model, TRAIN, None, small(rank=2, seed=3, steps=3))
    b = train_nasa(model, TRAIN, None, small(rank=2, seed=3, steps=3))
    c = train_nasa(model, TRAIN, None, small(rank=2, seed=4, steps=3))
    da, db, dc = _deltas(a), _deltas(b), _deltas(c)
    assert all(torch.equal(da[k], db[k]) for k in da)
    assert any(not torch.equal(da[k], dc[k]) for k in da)
    assert a.to_dataframe().equals(b.to_dataframe())


def test_resume_gives_the_uninterrupted_result(model, tmp_path):
    cfg = small(steps=6, checkpoint_every=2, eval_every=3)
    full = train_nasa(model, TRAIN, VAL, cfg)

    def crash(step, parts):
        if step == 5:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        train_nasa(model, TRAIN, VAL, cfg, checkpoint_dir=tmp_path, callback=crash)
    assert model.bridge.training is False and not hooks_remaining(model)
    import torch as _t

    assert _t.load(tmp_path / "checkpoint.pt", weights_only=False)["state"]["step"] == 4  # the last checkpoint
    resumed = train_nasa(model, TRAIN, VAL, cfg, checkpoint_dir=tmp_path, resume=True)
    df, dr = _deltas(full), _deltas(resumed)
    assert all(torch.equal(df[k], dr[k]) for k in df)
    assert resumed.steps_done == 6
    pd.testing.assert_frame_equal(full.to_dataframe(), resumed.to_dataframe())
    with pytest.raises(ValueError, match=r"written with another config .*'lr': \(0\.03, 0\.01\)"):
        train_nasa(model, TRAIN, VAL, cfg.replace(lr=1e-2), checkpoint_dir=tmp_path, resume=True)


def test_loss_decreases_on_toy_task(model):
    res = train_nasa(model, VAL, VAL, small(heads="0.0,0.1,0.2,0.3,1.0,1.1,1.2,1.3", steps=8, batch_size=6, eval_every=4, lr=3e-2))
    h = res.history_wide()
    val = h[h.split == "val"].set_index("step")
    assert val.loc[0, "loss"] == pytest.approx(0.7103, abs=2e-3)  # the base model: near chance
    assert val.loc[8, "loss"] < val.loc[0, "loss"] - 0.2
    assert val.loc[8, "accuracy"] > val.loc[0, "accuracy"]
    train_loss = h[h.split == "train"]["loss"].to_numpy()
    assert train_loss[-1] < train_loss[0] - 0.2
    assert res.after.metrics["accuracy"] == val.loc[res.best_step, "accuracy"]


def test_model_restored_after_training_and_after_an_exception(model):
    model.bridge.eval()
    train_nasa(model, TRAIN, VAL, small(steps=1, model_mode="train"))
    assert model.bridge.training is False and not hooks_remaining(model)
    assert model.extra.get("nasa_adapters", []) == []

    def boom(step, parts):
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        train_nasa(model, TRAIN, VAL, small(steps=3, model_mode="train"), callback=boom)
    assert model.bridge.training is False and not hooks_remaining(model)
    assert model.extra.get("nasa_adapters", []) == []


def test_early_stopping_and_best_restore(model):
    res = train_nasa(model, TRAIN, VAL, small(steps=12, eval_every=1, lr=3.0, patience=1, max_grad_norm=None))
    h = res.history_wide()
    val = h[h.split == "val"].set_index("step")["loss"]
    assert res.stopped_early and res.steps_done < 12
    assert res.best_step == int(val.idxmin())
    assert res.after.metrics["mean_logit_diff"] == pytest.approx(
        h[(h.split == "val") & (h.step == res.best_step)]["mean_logit_diff"].item()
    )


def test_balanced_batches_are_balanced_and_stateless():
    labels = ["yes"] * 5 + ["no"] * 3
    s = BalancedBatches(labels, 5, seed=1)
    first = [s.rows(i) for i in range(8)]
    assert [s.rows(i) for i in range(8)] == first == [BalancedBatches(labels, 5, seed=1).rows(i) for i in range(8)]
    yes_counts = [sum(labels[i] == "yes" for i in rows) for rows in first]
    assert yes_counts == [3, 2] * 4  # ceil/floor alternate
    used_yes = [i for rows in first[:5] for i in rows if labels[i] == "yes"]
    assert sorted(used_yes[:5]) == [0, 1, 2, 3, 4]  # one full pass (epoch) over the yes rows before repeating
    with pytest.raises(ValueError, match="has no 'no' examples"):
        BalancedBatches(["yes", "yes"], 2, 0)


# ------------------------------------------------------------------------------------------ objective


def test_nas_targets_values():
    labels = torch.tensor([1, 0, 1])
    assert torch.equal(nas_targets(labels, "neutral", 2.0), torch.zeros(3))
    assert torch.equal(nas_targets(labels, "label", 2.0), torch.tensor([-2.0, 2.0, -2.0]))


def test_nas_alignment_term_matches_the_scan_and_pulls_nas(model):
    from nasa_lens.nas import nas_for_batch

    batch = build_batch(model, VAL)
    heads = [(1, 0), (1, 3)]
    loss0, parts0 = batch_loss(model, batch, heads, lambda_nas=0.0)
    loss, parts = batch_loss(model, batch, heads, lambda_nas=2.0, nas_target="label", nas_target_scale=1.5)
    nas = nas_for_batch(model, batch, layers=[1])[:, 0, [0, 3]]  # the scan's own numbers
    target = torch.where(batch.labels == 1, -1.5, 1.5)[:, None]
    want = ((nas - target) ** 2).mean().item()
    assert parts["nas_loss"] == pytest.approx(want, rel=1e-5)
    assert parts["ce"] == pytest.approx(parts0["ce"], rel=1e-6)
    assert loss.item() == pytest.approx(parts0["ce"] + 2.0 * want, rel=1e-5)
    res = train_nasa(model, TRAIN, None, small(heads="1.0,1.3", steps=6, lambda_nas=10.0, nas_target="neutral", lr=5e-2))
    h = res.history_wide()
    tr = h[h.split == "train"]
    assert tr["nas_loss"].iloc[-1] < 0.5 * tr["nas_loss"].iloc[0]


# ------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"heads": "top:x"}, "is not a head spec"),
        ({"heads": ""}, "heads must not be empty"),
        ({"rank": 0}, "rank must be a positive int"),
        ({"lr": -1.0}, "lr must be a positive number"),
        ({"steps": 0}, "steps must be a positive int"),
        ({"batch_size": 1}, "batch_size must be >= 2"),
        ({"lambda_nas": -0.1}, "lambda_nas must be a finite number >= 0"),
        ({"nas_target": "up"}, "nas_target must be 'neutral' or 'label'"),
        ({"patience": 0}, "patience must be >= 1 or None"),
        ({"early_stop_on": "acc"}, "early_stop_on must be"),
        ({"format": "maybe"}, "format must be one of"),
        ({"key_rule": "some"}, "key_rule must be 'complete' or 'any'"),
    ],
)
def test_config_rejects_bad_values(kw, msg):
    with pytest.raises(ValueError, match=msg):
        NASAConfig(**kw)


def test_config_round_trips_through_dict():
    cfg = NASAConfig(heads=[(3, 1), (0, 2)], rank=4, lambda_nas=0.1)
    again = NASAConfig.from_dict(cfg.to_dict())
    assert again.heads == "3.1,0.2" and again.rank == 4 and again.betas == cfg.betas
    with pytest.raises(ValueError, match=r"unknown NASAConfig fields \['bogus'\]"):
        NASAConfig.from_dict({"bogus": 1})


def test_training_refuses_bad_data(model):
    with pytest.raises(ValueError, match="has no 'no' examples"):
        train_nasa(model, [q for q in TRAIN if q.label == "yes"], None, small(steps=1))
    with pytest.raises(ValueError, match="no training examples"):
        train_nasa(model, [], None, small())


# ------------------------------------------------------------------------------------------ selection


def test_top_k_uses_the_ranking_and_incremental_adds_heads(model):
    ranking = np.arange(8, dtype=float).reshape(2, 4)  # highest: 1.3, then 1.2
    res = train_nasa(model, TRAIN, None, small(heads="top:2", steps=1), ranking=ranking)
    assert res.heads == [(1, 3), (1, 2)]  # ranked order
    inc = train_nasa(model, TRAIN, None, small(heads="incremental", steps=1, incremental_max_rounds=2, incremental_gap=-2.0), ranking=ranking)
    assert [r["heads"] for r in inc.rounds] == [["1.3"], ["1.3", inc.rounds[0]["added_next"]]]
    assert sorted(inc.heads) == sorted([(1, 3), tuple(int(x) for x in inc.rounds[0]["added_next"].split("."))])
    stop = train_nasa(model, TRAIN, None, small(heads="incremental", steps=1, incremental_max_rounds=3, incremental_gap=5.0), ranking=ranking)
    assert len(stop.rounds) == 1  # pr_gap is never above 5: stop after the first round


def test_holdout_split_is_label_balanced():
    tr, va = holdout_split(TRAIN, 0.5, seed=0)
    assert sorted(e.id for e in tr + va) == sorted(e.id for e in TRAIN)
    assert sum(e.label == "yes" for e in va) == 3 and sum(e.label == "no" for e in va) == 3


# ------------------------------------------------------------------------------------------ checks and baselines


def test_fit_threshold_by_hand():
    labels = [1, 1, 0, 0, 1, 0]
    p = [0.40, 0.30, 0.20, 0.10, 0.60, 0.35]
    # p > 0.25 gives yes for 0.40, 0.30, 0.60, 0.35 -> TPR 1, TNR 2/3 -> balanced 0.833 (best)
    t = fit_threshold(labels, p)
    assert 0.20 < t < 0.30 and t == pytest.approx(0.25)
    with pytest.raises(ValueError, match="needs both labels"):
        fit_threshold([1, 1], [0.2, 0.3])


def test_general_ability_checks(model):
    items = arithmetic_items(40)
    assert len(items) == 40 and all(eval(q[8:-1]) == a and 0 <= a <= 9 for q, a in items)
    acc = arithmetic_accuracy(model, items[:5])
    assert set(acc.tolist()) <= {0, 1} and len(acc) == 5
    losses = lm_loss(model, NEUTRAL_TEXT[:2])
    tok = model.tokenizer
    ids = torch.tensor([tok(NEUTRAL_TEXT[0])["input_ids"]])
    with torch.no_grad():
        logits = model.bridge(ids)
    want = torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:]).item()
    assert losses[0] == pytest.approx(want, rel=1e-4)  # padding (second text) does not change the first


def test_compare_methods_table(model, tmp_path):
    cfg = small(heads="top:2", steps=2, eval_every=0)
    res = compare_methods(model, TRAIN, {"q": VAL}, cfg, val=VAL, n_boot=10, nas_limit=4)
    df = res.to_dataframe()
    assert list(df.columns) == ["method", "dataset", "metric", "value", "ci_low", "ci_high", "n_params", "seconds"]
    assert res.meta["methods"] == ["base", "threshold", "nasa", "random", "all"]
    per_method = df.groupby("method")["n_params"].first().to_dict()
    assert per_method["base"] == 0 and per_method["threshold"] == 1
    assert per_method["nasa"] == per_method["random"] == 2 * 16 * 64
    assert per_method["all"] == (8 + 4) * 16 * 64  # every q head and (all groups complete) every k group
    assert len(res.meta["heads"]["random"]) == 2
    base_acc = df[(df.method == "base") & (df.dataset == "q") & (df.metric == "accuracy")].value.item()
    assert base_acc == pytest.approx(0.5)  # tiny-random says "no" to everything
    assert {"nas_heads_before", "nas_heads_after"} <= set(df[df.method == "nasa"].metric)
    assert set(df[df.dataset == "neutral-text"].method) == {"base", "threshold", "nasa", "random", "all"}
    table = res.table()
    assert set(table.columns) >= {"dataset", "method", "pr_gap", "recall", "accuracy", "auroc", "n_params", "seconds"}
    res.save(tmp_path)
    again = ComparisonResult.load(tmp_path)
    pd.testing.assert_frame_equal(again.to_dataframe(), df, check_dtype=False)
    assert not hooks_remaining(model)



# the numbers compare_methods gave before it dispatched on method objects (string dispatch, commit 061c1d3), and
# before its methods became de-biasing fixes (nasa_lens.debias), on tiny-random: mean logit difference and ECE on
# "q2", NAS of the trained heads before / after on "q2"
PINNED_Q2 = {
    "base": (-0.24330458293358484, 0.060504029194513975, None, None),
    "threshold": (-0.24330458293358484, 0.060504029194513975, None, None),
    "nasa": (-0.16409801691770554, 0.17177329957485196, -0.04411213332787156, -0.03867688006721437),
    "random": (-0.1012477333812664, 0.025222361087799072, -0.051570662297308445, -0.039115882478654385),
    "all": (0.0033436802526315055, 0.44068051874637604, -0.741588681936264, -0.31056908518075943),
}


def test_compare_methods_objects_give_the_string_dispatch_numbers(model):
    """Fix objects and names, in any order: the rows, their order and every number of the old string
    dispatch (random's head count from nasa's selection, threshold on the shared base evaluation)."""
    from nasa_lens.debias.methods import NASA, AllHeads, RandomNASA
    from nasa_lens.evaluate import METRIC_KEYS

    cfg = small(heads="top:2", steps=2, eval_every=0)
    shared = {"config": cfg, "format": cfg.format, "batch_size": cfg.eval_batch_size}
    res = compare_methods(model, TRAIN, {"q": VAL, "q2": TRAIN[3:9]}, cfg, val=VAL,
                          methods=[AllHeads(**shared), "threshold", RandomNASA(seed=3, **shared), NASA(**shared), "base"], n_boot=10,
                          nas_limit=4, general=False, progress=False, random_seed=3, threshold_limit=5, nas_sets=["q2"])
    df = res.to_dataframe()
    assert res.meta["methods"] == ["base", "threshold", "nasa", "random", "all"]
    want_keys = []
    for m in res.meta["methods"]:
        want_keys += [(m, ds, k) for ds in ("q", "q2") for k in METRIC_KEYS]
        if m in ("nasa", "random", "all"):
            want_keys += [(m, "q2", "nas_heads_before"), (m, "q2", "nas_heads_after")]
    assert list(zip(df.method, df.dataset, df.metric)) == want_keys
    assert res.thresholds == {"threshold": pytest.approx(0.4302230030298233, abs=1e-9)}
    assert res.meta["heads"]["nasa"] == ["1.0", "1.1"] and res.meta["heads"]["random"] == ["0.3", "1.0"]
    assert len(res.meta["heads"]["all"]) == 8 and set(res.train_results) == {"nasa", "random", "all"}
    for m, pinned in PINNED_Q2.items():
        for metric, want in zip(("mean_logit_diff", "ece", "nas_heads_before", "nas_heads_after"), pinned):
            got = df[(df.method == m) & (df.dataset == "q2") & (df.metric == metric)].value
            if want is None:
                assert got.empty, (m, metric)
            else:
                assert got.item() == pytest.approx(want, rel=1e-5, abs=1e-7), (m, metric)


def test_compare_methods_registry_and_custom_methods(model, monkeypatch):
    """compare_methods is a preset of the one registry (nasa_lens.debias): its names, its errors, its run order,
    and a user's own fix, which shares the base evaluation like every fix that leaves the model unchanged."""
    import nasa_lens.evaluate as evaluate_module
    from nasa_lens.debias import BASELINE_METHODS, METHODS, DebiasError, DebiasMethod
    from nasa_lens.vocab import NasaLensError

    assert set(BASELINE_METHODS) <= set(METHODS)
    assert issubclass(DebiasError, NasaLensError) and issubclass(DebiasError, ValueError)
    with pytest.raises(DebiasError, match=r"unknown de-biasing method\(s\) 'ridge'; known: base, threshold, "):
        compare_methods(model, TRAIN, {"q": VAL}, small(), methods=["base", "ridge"])

    class YesCount(DebiasMethod):  # a user's fix: no change to the model, read from the shared base evaluation
        name = "yes-count"
        changes_model = False

        def _fit(self, model, train):
            return None

    with pytest.raises(DebiasError, match="two different methods named 'yes-count'"):
        compare_methods(model, TRAIN, {"q": VAL}, small(), methods=[YesCount(), YesCount()])
    calls = []
    real = evaluate_module.evaluate
    monkeypatch.setattr(evaluate_module, "evaluate", lambda m, ds, *a, **kw: calls.append(len(ds)) or real(m, ds, *a, **kw))
    res = compare_methods(model, TRAIN, {"q": VAL}, small(), methods=[YesCount(), "threshold", "threshold", "base"], general=False,
                          n_boot=10, progress=False)
    assert res.meta["methods"] == ["base", "threshold", "yes-count"]
    assert calls == [len(VAL)]  # the base evaluation ran once, shared by the three
    assert set(res.frame.method) == {"base", "threshold", "yes-count"}
    assert res.frame[res.frame.method == "yes-count"].yes_rate.tolist() == [0.0]  # tiny-random says "no" to everything


# ------------------------------------------------------------------------------------------ CLI


def test_cli_finetune_writes_adapter_metrics_and_resumes(model, tmp_path, monkeypatch):
    from nasa_lens.adapters import attached_adapters
    from nasa_lens.cli import main
    from nasa_lens.datasets import write_jsonl

    monkeypatch.setattr("nasa_lens.jobs.common.load_job_model", lambda name, **kw: model)  # no reload
    bigger = [Example(f"Is {a} bigger than {b}?", "yes" if a > b else "no", f"c{a}_{b}") for a in range(6) for b in range(6) if a != b]
    even = [Example(f"Is {a} an even number?", "yes" if a % 2 == 0 else "no", f"e{a}") for a in range(40)]
    write_jsonl(tmp_path / "cmp.jsonl", bigger)
    write_jsonl(tmp_path / "even.jsonl", even)
    out = tmp_path / "out"
    args = ["finetune", "--model", "tiny-random", "--train", f"{tmp_path / 'cmp.jsonl'},{tmp_path / 'even.jsonl'}",
            "--heads", "0.1,1.2", "--steps", "2", "--batch-size", "4", "--limit", "12", "--eval-every", "1",
            "--checkpoint-every", "1", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    names = {p.name for p in out.iterdir()}
    assert {ADAPTER_FILE, ADAPTER_META_FILE, "metrics.json", "history.csv", "checkpoints"} <= names
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["before"]) >= {"accuracy", "pr_gap", "recall", "auroc", "n", "ci"}
    assert metrics["before"]["n"] == 4  # round(0.2 x 12) of each label of the 2 x 12 label-balanced examples
    assert metrics["heads"] == ["0.1", "1.2"]
    first = (out / ADAPTER_FILE).read_bytes()
    assert main([*args, "--resume"]) == 0  # a finished run resumes to the same adapter
    assert (out / ADAPTER_FILE).read_bytes() == first
    # the lead's `eval --adapter` leaves the adapter attached (persistently) on the model it loaded
    assert main(["eval", "--model", "tiny-random", "--data", str(tmp_path / "cmp.jsonl"), "--limit", "6",
                 "--adapter", str(out / ADAPTER_FILE), "--out", str(tmp_path / "ev")]) == 0
    attached = attached_adapters(model)
    assert [a.state for a in attached] == ["hooked"] and attached[0].heads == [(0, 1), (1, 2)]
    attached[0].remove()
    assert main(["finetune", "--model", "tiny-random", "--train", str(tmp_path / "cmp.jsonl"), "--heads", "9.9",
                 "--out", str(out)]) == 2  # bad head: one clear error line, exit 2
    assert not hooks_remaining(model)


def test_cli_defaults_mirror_the_config():
    """Every flag of ``finetune`` that sets a NASAConfig field defaults to that field's default (the flags
    are generated from the config; tests/unit/test_cli.py checks the same for every command)."""
    import dataclasses

    from nasa_lens.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["finetune"]
    defaults = {a.dest: a.default for a in sub._actions}
    cfg = NASAConfig()
    fields = [f.name for f in dataclasses.fields(NASAConfig) if f.name != "betas"]
    assert {k: defaults[k] for k in fields} == {k: getattr(cfg, k) for k in fields}
    assert defaults["checkpoint_every"] == 0  # was 25 in a hand-written flag while the config said 0


def test_a_leaked_hook_fails_the_test_that_leaked_it(model):
    class Item:
        name = "leaky"
        funcargs = {"model": model}

    model.bridge.hook_dict["blocks.0.attn.hook_z"].add_hook(lambda z, hook: None)
    try:
        with pytest.raises(AssertionError, match="leaky left hooks attached"):
            check_after_test(Item())
    finally:
        model.bridge.reset_hooks()
    check_after_test(Item())
