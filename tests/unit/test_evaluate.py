"""Bias metrics against hand-computed values, result round trips, and evaluate() on tiny-random."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nasa_lens.evaluate import METRIC_KEYS, EvalResult, bias_metrics, bootstrap_ci, evaluate, predict


def test_metrics_by_hand():
    labels = [1, 1, 1, 1, 0, 0, 0, 0]
    p = [0.9, 0.6, 0.4, 0.2, 0.7, 0.3, 0.1, 0.05]
    m = bias_metrics(labels, p)
    # predicted yes: rows 0, 1, 4 -> tp=2, fp=1, fn=2, tn=3
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["pr_gap"] == pytest.approx(2 / 3 - 0.5)
    assert m["yes_rate"] == pytest.approx(3 / 8)
    # AUROC: pairs (pos > neg): 0.9>all 4, 0.6>3 (not 0.7), 0.4>3, 0.2>2 -> 12/16
    assert m["auroc"] == pytest.approx(12 / 16)


def test_auroc_counts_ties_half_and_ece_by_hand():
    m = bias_metrics([1, 0], [0.5, 0.5])
    assert m["auroc"] == pytest.approx(0.5)
    # all p=0.8 in one bin, accuracy of yes = 0.5 -> ECE = |0.8-0.5|
    m = bias_metrics([1, 0, 1, 0], [0.8] * 4)
    assert m["ece"] == pytest.approx(0.3)


def test_all_no_model_has_nan_precision_and_full_gap_signature():
    m = bias_metrics([1, 1, 0, 0], [0.1, 0.2, 0.1, 0.3])
    assert math.isnan(m["precision"]) and m["recall"] == 0.0 and m["yes_rate"] == 0.0
    assert math.isnan(m["pr_gap"])


def test_threshold_ties_go_to_no():
    assert bias_metrics([1], [0.5])["yes_rate"] == 0.0
    assert bias_metrics([1], [0.5], threshold=0.4)["yes_rate"] == 1.0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in shape"):
        bias_metrics([1, 0], [0.5])


def test_bootstrap_is_seeded_and_brackets_the_point_estimate():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    p = np.clip(y * 0.3 + rng.random(200) * 0.7, 0, 1)
    a = bootstrap_ci(y, p, n_boot=200, seed=3)
    b = bootstrap_ci(y, p, n_boot=200, seed=3)
    assert {k: v for k, v in a.items() if k != "mean_logit_diff"} == {k: v for k, v in b.items() if k != "mean_logit_diff"}
    assert all(math.isnan(x) for x in a["mean_logit_diff"])  # no logit differences given
    m = bias_metrics(y, p)
    for k in ("accuracy", "recall", "auroc"):
        lo, hi = a[k]
        assert lo <= m[k] <= hi and hi - lo < 0.3


def test_evaluate_on_tiny_random_and_round_trip(tiny, questions, tmp_path):
    res = evaluate(tiny, questions, n_boot=50, progress=False)
    p, d = predict(tiny, questions, progress=False)
    np.testing.assert_allclose(res.p_yes, p)
    # p_yes is the two-way softmax of the logit difference
    np.testing.assert_allclose(res.p_yes, 1 / (1 + np.exp(-d)), rtol=1e-5)
    assert res.labels.tolist() == [1, 0, 1, 0, 1, 0]
    assert set(res.metrics) == set(METRIC_KEYS)
    df = res.to_dataframe()
    assert list(df.columns[:4]) == ["id", "label", "p_yes", "pred"]
    assert df["label"].tolist() == ["yes", "no", "yes", "no", "yes", "no"]
    res.save(tmp_path)
    back = EvalResult.load(tmp_path)
    np.testing.assert_allclose(back.p_yes, res.p_yes)
    assert back.metrics["accuracy"] == pytest.approx(res.metrics["accuracy"])
    assert back.ids == res.ids
    assert not list(tmp_path.glob(".*.tmp"))


def test_batch_size_does_not_change_predictions(tiny, questions):
    a, _ = predict(tiny, questions, batch_size=1, progress=False)
    b, _ = predict(tiny, questions, batch_size=6, progress=False)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_unlabelled_examples_cannot_be_evaluated(tiny):
    from types import SimpleNamespace

    with pytest.raises(ValueError, match="needs a gold label"):  # an object like Example, without a valid label
        evaluate(tiny, [SimpleNamespace(question="Is it?", label="maybe", id="u0", context=None)], n_boot=10, progress=False)


def test_atomic_writes_leave_the_old_file_on_error_and_follow_the_umask(tmp_path):
    import os

    from nasa_lens.io import atomic_path, write_text

    target = write_text(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert (target.stat().st_mode & 0o777) == (0o666 & ~umask)


def test_top_level_evaluate_works_after_the_module_was_imported(tiny, questions):
    """``import nasa_lens.evaluate`` sets the package attribute to the module; ``nl.evaluate(...)`` must still
    evaluate (it failed when test_evaluate ran before the README quick-start test)."""
    import nasa_lens as nl
    import nasa_lens.evaluate as ev_module

    assert nl.evaluate is ev_module or nl.evaluate is evaluate
    via_package = nl.evaluate(tiny, questions, n_boot=0, progress=False)
    direct = evaluate(tiny, questions, n_boot=0, progress=False)
    assert isinstance(via_package, EvalResult)
    np.testing.assert_array_equal(via_package.p_yes, direct.p_yes)
