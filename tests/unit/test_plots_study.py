"""Study figures (nasa_lens.plots.study): the data they show is the frame's."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nasa_lens.nas import NASResult
from nasa_lens.plots.study import (
    SUMMARY_METRICS,
    before_after_bars,
    condition_agreement,
    metrics_by_model,
    nas_heatmaps_by_model,
    training_curve,
)


def _bias_frame() -> pd.DataFrame:
    rows = []
    for model, base in (("m1", 0.6), ("m2", 0.4)):
        for ds in ("d1", "d2"):
            for phase, shift in (("before", 0.0), ("after", 0.1)):
                for i, metric in enumerate(SUMMARY_METRICS):
                    v = base + shift + i / 100 + (0.05 if ds == "d2" else 0.0)
                    rows.append({"model": model, "dataset": ds, "phase": phase, "metric": metric, "value": v,
                                 "ci_low": v - 0.02, "ci_high": v + 0.03, "n": 10})
    return pd.DataFrame(rows)


def test_metrics_by_model_one_bar_per_model_and_panel():
    fig = metrics_by_model(_bias_frame())
    assert [(t.name, t.xaxis) for t in fig.data] == [("m1", "x"), ("m2", "x"), ("m1", "x2"), ("m2", "x2")]
    m1_d1 = fig.data[0]
    assert list(m1_d1.x) == list(SUMMARY_METRICS)
    np.testing.assert_allclose(m1_d1.y, [0.6 + i / 100 for i in range(5)])
    np.testing.assert_allclose(m1_d1.error_y.array, [0.03] * 5)
    np.testing.assert_allclose(m1_d1.error_y.arrayminus, [0.02] * 5)
    np.testing.assert_allclose(fig.data[3].y, [0.45 + i / 100 for i in range(5)])  # m2 on d2
    after = metrics_by_model(_bias_frame(), phase="after")
    np.testing.assert_allclose(after.data[0].y, [0.7 + i / 100 for i in range(5)])
    with pytest.raises(ValueError, match="missing \\['ci_low'"):
        metrics_by_model(_bias_frame().drop(columns="ci_low"))


def test_before_after_bars_of_one_model():
    fig = before_after_bars(_bias_frame(), "m2", metrics=("accuracy", "recall"))
    assert [(t.name, t.xaxis) for t in fig.data] == [("before", "x"), ("after", "x"), ("before", "x2"), ("after", "x2")]
    np.testing.assert_allclose(fig.data[0].y, [0.40, 0.42])
    np.testing.assert_allclose(fig.data[1].y, [0.50, 0.52])
    with pytest.raises(ValueError, match="no rows for model 'm3'"):
        before_after_bars(_bias_frame(), "m3")


def test_nas_heatmaps_by_model_share_one_scale():
    a = np.array([[1.0, -4.0], [0.0, 2.0]])
    b = np.array([[0.5, 1.0, 3.0]])
    results = {name: NASResult(scores=np.stack([m, m]), ids=["x", "y"], labels=np.array([1, 0]), model=name, dataset="d")
               for name, m in (("A", a), ("B", b))}
    fig = nas_heatmaps_by_model(results)
    np.testing.assert_allclose(np.asarray(fig.data[0].z, float), a)
    np.testing.assert_allclose(np.asarray(fig.data[1].z, float), b)
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == (-4.0, 4.0)
    assert [a.text for a in fig.layout.annotations] == ["A (2x2)", "B (1x3)"]


def test_training_curve_one_panel_per_column_and_gaps_dropped():
    history = pd.DataFrame({"step": [1, 2, 3], "train_loss": [0.9, 0.6, 0.4], "val_pr_gap": [np.nan, 0.2, np.nan], "note": ["a", "b", "c"]})
    fig = training_curve(history)
    assert [a.text for a in fig.layout.annotations] == ["train_loss", "val_pr_gap"]  # numeric columns only
    assert list(fig.data[1].x) == [2] and list(fig.data[1].y) == [0.2]
    np.testing.assert_allclose(fig.data[0].y, [0.9, 0.6, 0.4])


def test_condition_agreement_is_a_symmetric_matrix():
    corr = pd.DataFrame({"a": ["Yes/No", "Yes/No"], "b": ["No/Yes", "True/False"], "spearman_r": [0.8, -0.2],
                         "top_k_overlap": [0.6, 0.2], "k": [5, 5]})
    fig = condition_agreement(corr)
    (trace,) = fig.data
    assert list(trace.x) == ["Yes/No", "No/Yes", "True/False"]
    np.testing.assert_allclose(np.asarray(trace.z, float), [[1.0, 0.8, -0.2], [0.8, 1.0, 0.0], [-0.2, 0.0, 1.0]])
    assert trace.text[0][1] == "r=0.80<br>top-5 overlap 0.60"
