"""De-biasing fixes (nasa_lens.debias) on tiny-random: every fix fits, applies, leaves the model bitwise clean,
saves, loads, refuses another model; knockout equals the interventions' AttentionKnockout; the compare CLI's
base rows equal ``nasa-lens eval``; bad input gives clear errors."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from nasa_lens.adapters import projection_module
from nasa_lens.cli import main
from nasa_lens.datasets import load_dataset
from nasa_lens.debias import METHODS, DebiasError, load_method, make_method
from nasa_lens.debias.methods import candidate_positions
from nasa_lens.interventions import AttentionKnockout
from nasa_lens.prompts import build_batch
from nasa_lens.vocab import NasaLensError

SMALL = {
    "threshold": {"fit_limit": 16, "batch_size": 8},
    "knockout": {"k_grid": (1, 2), "fit_limit": 12, "scan_limit": 12, "batch_size": 8},
    "mask": {"k_grid": (1, 2), "fit_limit": 12, "sweep_limit": 8, "reference_limit": 12, "batch_size": 8},
    "steer": {"k": 2, "alpha_grid": (2.0,), "fit_limit": 16, "batch_size": 8},
    "nasa": {"k": 2, "steps": 2, "scan_limit": 12, "batch_size": 8},
}
SMALL["random"] = SMALL["all"] = SMALL["nasa"]
for _m in ("knockout", "mask", "steer"):
    SMALL[f"random-{_m}"] = SMALL[_m]


@pytest.fixture(scope="module")
def data():
    return list(load_dataset("arithmetic", limit=24, split="train")), list(load_dataset("arithmetic", limit=8, split="test"))


@pytest.fixture(scope="module")
def fitted(model, data):
    fixes = {name: make_method(name, **SMALL.get(name, {})).fit(model, data[0]) for name in METHODS}
    for name in ("nasa", "random", "all"):  # 2 steps may keep the step-0 (identity) deltas: give them a visible edit
        with torch.no_grad():
            for p in fixes[name].adapter.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    return fixes


def logits(model, batch):
    with torch.no_grad():
        return model.bridge(batch.input_ids, **batch.forward_kwargs())


def test_registry_names_every_fix():
    from nasa_lens.vocab import DEBIAS_METHODS

    assert tuple(sorted(METHODS)) == tuple(sorted(DEBIAS_METHODS))
    with pytest.raises(DebiasError, match="unknown de-biasing method 'ridge'"):
        make_method("ridge")
    assert issubclass(DebiasError, NasaLensError)


@pytest.mark.parametrize("name", list(METHODS))
def test_fix_applies_and_leaves_bitwise_clean_logits(model, data, fitted, name):
    fix = fitted[name]
    batch = build_batch(model, data[1])
    clean = logits(model, batch)
    with fix.apply(model):
        inside = logits(model, batch)
    assert torch.equal(logits(model, batch), clean)
    assert fix.changes_model == (not torch.equal(inside, clean)), name
    with pytest.raises(RuntimeError, match="boom"):
        with fix.apply(model):
            raise RuntimeError("boom")
    assert torch.equal(logits(model, batch), clean)
    assert fix.fit_seconds >= 0 and isinstance(fix.n_params, int)
    assert (len(fix.heads) > 0) == (name not in ("base", "threshold"))


@pytest.mark.parametrize("name", list(METHODS))
def test_fix_save_load_round_trip(model, data, fitted, name, tmp_path):
    fix = fitted[name]
    batch = build_batch(model, data[1])
    folder = fix.save(tmp_path / name)
    meta = json.loads((folder / "method.json").read_text())
    assert meta["method"] == name and meta["base_model"] == "tiny-random" and meta["n_params"] == fix.n_params
    back = load_method(folder, model)
    assert type(back) is type(fix) and back.heads == fix.heads and back.threshold == fix.threshold
    assert back.n_params == fix.n_params
    with fix.apply(model):
        a = logits(model, batch)
    with back.apply(model):
        b = logits(model, batch)
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["threshold", "knockout", "mask", "steer", "nasa"])
def test_fix_refuses_another_model(model, fitted, name, tmp_path):
    folder = fitted[name].save(tmp_path / name)
    other = dataclasses.replace(model, name="smollm2-135m-instruct", extra={})
    with pytest.raises(DebiasError, match="fitted on base model 'tiny-random', not on 'smollm2-135m-instruct'"):
        load_method(folder, other)
    with pytest.raises(DebiasError, match="cannot be applied to 'smollm2-135m-instruct'"):
        with fitted[name].apply(other):
            pass
    weight = projection_module(model, 0, "q").weight
    original = weight[0, 0].item()
    with torch.no_grad():
        weight[0, 0] += 1.0
    try:
        with pytest.raises(DebiasError, match="fitted on other weights of 'tiny-random'"):
            load_method(folder, model)
    finally:
        with torch.no_grad():
            weight[0, 0] = original


def test_load_refuses_corrupt_or_foreign_folders(model, fitted, tmp_path):
    with pytest.raises(DebiasError, match="no saved de-biasing fix"):
        load_method(tmp_path / "nothing", model)
    folder = fitted["steer"].save(tmp_path / "steer")
    data = (folder / "tensors.safetensors").read_bytes()
    (folder / "tensors.safetensors").write_bytes(data[:-8])
    with pytest.raises(DebiasError, match="corrupt or truncated"):
        load_method(folder, model)
    meta = json.loads((folder / "method.json").read_text())
    (folder / "method.json").write_text(json.dumps({**meta, "method": "ridge"}))
    with pytest.raises(DebiasError, match="unknown de-biasing method 'ridge'"):
        load_method(folder, model)


def test_unfitted_fix_refuses_to_apply(model):
    with pytest.raises(DebiasError, match="fit"):
        with make_method("steer").apply(model):
            pass


def test_candidate_positions_match_the_prompt_builder(model, data):
    batch = build_batch(model, data[0][:8])
    yes_id = int(batch.input_ids[0, batch.pos_yes[0]])
    no_id = int(batch.input_ids[0, batch.pos_no[0]])
    py, pn, found = candidate_positions(batch.input_ids, yes_id, no_id)
    assert found.all() and torch.equal(py, batch.pos_yes) and torch.equal(pn, batch.pos_no)
    py, pn, found = candidate_positions(torch.tensor([[1, 2, 3]]), yes_id, no_id)
    assert not found.any()


def test_knockout_equals_the_interventions_attention_knockout(model, data, fitted):
    fix = fitted["knockout"]
    batch = build_batch(model, data[1])
    ref = AttentionKnockout(tuple(fix.heads), "remove", "no", "after")
    with torch.no_grad():
        want = model.bridge.run_with_hooks(batch.input_ids, fwd_hooks=ref.hooks(batch), **batch.forward_kwargs())
    with fix.apply(model):
        got = logits(model, batch)
    assert torch.equal(got, want)


def test_steer_adds_alpha_times_direction_at_the_answer_position(model, data, fitted):
    fix = fitted["steer"]
    layer, head = min(fix.heads)
    batch = build_batch(model, data[1])
    seen = {}

    def grab(z, hook):
        seen.setdefault(len(seen), z.detach().clone())

    name = f"blocks.{layer}.attn.hook_z"
    with torch.no_grad():
        model.bridge.run_with_hooks(batch.input_ids, fwd_hooks=[(name, grab)], **batch.forward_kwargs())
        with fix.apply(model):
            model.bridge.run_with_hooks(batch.input_ids, fwd_hooks=[(name, grab)], **batch.forward_kwargs())
    clean, steered = seen[0], seen[1]  # our grab runs after the fix's hook on the same point
    diff = steered[:, -1, head] - clean[:, -1, head]
    assert torch.allclose(diff, (fix.alpha * fix.directions[layer, head]).expand_as(diff), atol=1e-5)
    assert torch.equal(steered[:, :-1], clean[:, :-1])
    assert fix.alpha == 2.0 and fix.n_params == 2 * model.d_head + 1


def test_threshold_fix_is_fit_threshold(model, data, fitted):
    from nasa_lens.evaluate import predict
    from nasa_lens.debias import fit_threshold

    rows = data[0][:16]
    p, _ = predict(model, rows, progress=False)
    y = np.array([ex.label == "yes" for ex in rows], int)
    assert fitted["threshold"].threshold == fit_threshold(y, p)


def test_head_choice_given_heads_are_used(model, data):
    fix = make_method("knockout", heads_given="1.2,0.1", k_grid=None, scan_limit=8, fit_limit=8).fit(model, data[0])
    assert fix.heads == [(1, 2), (0, 1)]
    rnd = make_method("random-knockout", k=3, k_grid=None, fit_limit=8).fit(model, data[0])
    assert len(rnd.heads) == 3 and rnd.random_order


# ---------------------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def compare_run(tmp_path_factory):
    """One ``nasa-lens compare`` run: ``(folder, exit code)`` (checked by a test, not here: a fixture's assert
    reports as an error)."""
    out = tmp_path_factory.mktemp("cmp")
    rc = main(["compare", "--model", "tiny-random", "--train", "arithmetic", "--test", "arithmetic,comparison",
               "--limit", "12", "--train-limit", "24", "--steps", "2", "--fit-limit", "12", "--n-boot", "50",
               "--methods", "base,threshold,steer", "--out", str(out)])
    return out, rc


@pytest.fixture()
def compare_out(compare_run):
    return compare_run[0]


def test_compare_exits_0(compare_run):
    assert compare_run[1] == 0


def test_compare_writes_table_fixes_figure_report(compare_out):
    df = pd.read_csv(compare_out / "comparison.csv")
    assert list(df.columns[:12]) == ["method", "dataset", "n", "accuracy", "precision", "recall", "pr_gap", "yes_rate",
                                     "auroc", "ece", "params", "fit_seconds"]
    assert {"accuracy_lo", "accuracy_hi", "pr_gap_lo", "ece_hi", "lm_loss"} <= set(df.columns)
    assert len(df) == 6 and set(df.dataset) == {"arithmetic", "comparison"}
    for name in ("base", "threshold", "steer"):
        assert (compare_out / "methods" / name / "method.json").is_file()
    assert (compare_out / "comparison.html").is_file() and "## comparison" in (compare_out / "report.md").read_text()


def test_compare_base_rows_equal_nasa_lens_eval(compare_out, tmp_path):
    df = pd.read_csv(compare_out / "comparison.csv").set_index(["method", "dataset"])
    for ds, split in (("arithmetic", ["--split", "test"]), ("comparison", [])):
        out = tmp_path / ds
        assert main(["eval", "--model", "tiny-random", "--data", ds, "--limit", "12", *split, "--out", str(out)]) == 0
        got = json.loads((out / "metrics.json").read_text())
        row = df.loc[("base", ds)]
        assert got["n"] == row.n
        for k in ("accuracy", "recall", "yes_rate", "auroc", "ece"):
            assert got[k] == pytest.approx(row[k], abs=1e-12), k
        # a saved fix applied by eval --method gives the compare row (steer changes the model)
        out2 = tmp_path / f"{ds}-steer"
        assert main(["eval", "--model", "tiny-random", "--data", ds, "--limit", "12", *split, "--method",
                     str(compare_out / "methods" / "steer"), "--out", str(out2)]) == 0
        got2 = json.loads((out2 / "metrics.json").read_text())
        for k in ("accuracy", "yes_rate", "auroc"):
            assert got2[k] == pytest.approx(df.loc[("steer", ds)][k], abs=1e-12), k


def test_compare_writes_per_question_predictions_and_paired_differences(compare_out):
    """comparison_predictions.csv.gz holds every fix's answer to every test question; the table's metrics
    recompute from it, and a paired difference is the difference of the two fixes' metrics on those questions."""
    from nasa_lens.debias import ComparisonResult
    from nasa_lens.evaluate import bias_metrics

    res = ComparisonResult.load(compare_out)
    pred, table = res.predictions, res.frame.set_index(["method", "dataset"])
    assert len(pred) == table.n.sum() == 6 * 12
    for (method, dataset), rows in pred.groupby(["method", "dataset"]):
        m = bias_metrics(rows.label.to_numpy(int), rows.p_yes.to_numpy(float), float(rows.threshold.iloc[0]))
        for k in ("accuracy", "yes_rate", "auroc"):
            assert m[k] == pytest.approx(table.loc[(method, dataset)][k], abs=1e-6), (method, dataset, k)
    d = res.paired("threshold", "base", "arithmetic", "yes_rate", n_boot=200)
    want = table.loc[("threshold", "arithmetic")].yes_rate - table.loc[("base", "arithmetic")].yes_rate
    assert d["diff"] == pytest.approx(want, abs=1e-6) and d["n"] == 12 and d["lo"] <= d["diff"] <= d["hi"]
    same = res.paired("steer", "steer", "comparison", n_boot=50)
    assert same["diff"] == same["lo"] == same["hi"] == 0 and same["p"] == 1
    with pytest.raises(Exception, match="no predictions of 'nasa'"):
        res.paired("nasa", "base", "arithmetic")


def test_paired_difference_is_narrower_than_two_separate_intervals():
    """Two predictors that agree on most questions: the paired interval of their accuracy difference excludes 0
    while the unpaired intervals of their accuracies overlap."""
    from nasa_lens.evaluate import bootstrap_ci, paired_difference

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    a = np.where(rng.random(200) < 0.75, y, 1 - y).astype(float)  # ~75% right
    b = a.copy()
    flip = np.flatnonzero(a == y)[:12]  # b is wrong on 12 questions a gets right, the same elsewhere
    b[flip] = 1 - b[flip]
    d = paired_difference(y, a, b, n_boot=500)
    assert d["diff"] == pytest.approx(12 / 200) and d["lo"] > 0 and d["p"] < 0.01
    ca, cb = bootstrap_ci(y, a, n_boot=500)["accuracy"], bootstrap_ci(y, b, n_boot=500)["accuracy"]
    assert ca[0] < cb[1]  # the separate intervals overlap
    with pytest.raises(Exception, match="same questions"):
        paired_difference(y, a, b[:5])
    with pytest.raises(Exception, match="unknown metric"):
        paired_difference(y, a, b, metric="acc")


@pytest.mark.parametrize("metric", ["accuracy", "yes_rate", "recall"])
def test_paired_difference_matches_its_definition(metric):
    """The vectorised resampling of accuracy and yes-rate draws the same questions, and gives the same interval and
    p, as scoring each resample with ``bias_metrics`` (what ``recall`` and the other metrics still do)."""
    from nasa_lens.evaluate import bias_metrics, paired_difference

    rng = np.random.default_rng(1)
    y, a, b = rng.integers(0, 2, 199), rng.random(199), rng.random(199)
    got = paired_difference(y, a, b, threshold_a=0.3, threshold_b=0.6, metric=metric, n_boot=200, seed=3)
    draw = np.random.default_rng(3)
    boot = []
    for _ in range(200):
        i = draw.integers(0, len(y), len(y))
        boot.append(bias_metrics(y[i], a[i], 0.3)[metric] - bias_metrics(y[i], b[i], 0.6)[metric])
    boot = np.array(boot)
    boot = boot[~np.isnan(boot)]
    assert (got["lo"], got["hi"]) == tuple(np.quantile(boot, [0.025, 0.975]))
    assert got["p"] == min(1.0, 2 * min(np.mean(boot <= 0), np.mean(boot >= 0)))
    assert got["diff"] == bias_metrics(y, a, 0.3)[metric] - bias_metrics(y, b, 0.6)[metric]


def test_compare_warns_when_a_test_set_is_a_training_set():
    from nasa_lens.jobs.compare import CompareConfig, load_compare_data

    cfg = CompareConfig(train="arithmetic", test="arithmetic,lookup:d1", limit=8, train_limit=8)
    with pytest.warns(UserWarning, match="also a training set: evaluated on its test split"):
        train, tests, notes = load_compare_data(cfg)
    assert not {ex.question for ex in train} & {ex.question for ex in tests["arithmetic"]}
    assert list(tests) == ["arithmetic", "lookup-d1"] and all(ex.id.startswith("lookup-d1-") for ex in tests["lookup-d1"])


@pytest.mark.parametrize("argv, message", [
    (["--methods", "base,ridge"], "unknown method(s) 'ridge'"),
    (["--steps", "0"], "--steps must be a positive integer"),
    (["--limit", "1"], "--limit must be an integer >= 2"),
])
def test_compare_bad_input_is_a_clear_error(argv, message, tmp_path, capsys):
    rc = main(["compare", "--model", "tiny-random", "--train", "arithmetic", "--test", "comparison", *argv, "--out", str(tmp_path)])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_eval_refuses_a_fix_from_another_model(compare_out, tmp_path, capsys):
    folder = compare_out / "methods" / "steer"
    meta = json.loads((folder / "method.json").read_text())
    other = tmp_path / "steer"
    other.mkdir()
    (other / "method.json").write_text(json.dumps({**meta, "base_model": "smollm2-135m-instruct"}))
    (other / "tensors.safetensors").write_bytes((folder / "tensors.safetensors").read_bytes())
    rc = main(["eval", "--model", "tiny-random", "--data", "comparison", "--limit", "4", "--method", str(other), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "fitted on base model 'smollm2-135m-instruct', not on 'tiny-random'" in capsys.readouterr().err


def test_the_lambda_arms_of_the_evidence_runs_reach_the_trainer():
    """experiments/debias_lookup.py trains NASA with ``lambda_nas`` > 0 by overriding the fix's one
    ``NASAConfig`` builder; the override must name a method the fix has (an override of a renamed method is
    dead code, and every arm then trains with lambda 0: what happened to the first 30-step run)."""
    import importlib.util
    from pathlib import Path

    from nasa_lens.debias.nasa import NASA

    path = Path(__file__).resolve().parents[2] / "experiments" / "debias_lookup.py"
    spec = importlib.util.spec_from_file_location("debias_lookup", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    fix = mod.nasa_with_lambda(0.5, k=2, steps=3, seed=1)
    overridden = [n for n in vars(type(fix)) if callable(getattr(type(fix), n)) and not n.startswith("__")]
    assert overridden and all(callable(getattr(NASA, n, None)) for n in overridden), overridden
    cfg = fix.training_config([(0, 1), (1, 0)])
    assert cfg.lambda_nas == 0.5 and cfg.steps == 3 and cfg.seed == 1 and fix.name == "nasa-lambda0.5"
    assert mod.nasa_with_lambda(0.0, k=2).name == "nasa" and mod.nasa_with_lambda(0.0, k=2).training_config([(0, 1)]).lambda_nas == 0
