"""NASA figures (nasa_lens.plots.finetune): the data they show is the result's."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nasa_lens.debias import ComparisonResult
from nasa_lens.finetune import NASAConfig, TrainResult
from nasa_lens.nas import NASResult
from nasa_lens.plots.finetune import METHOD_COLORS, method_comparison, nas_change_heatmap, training_curves
from nasa_lens.vocab import NAS_COLORSCALE


def _nas(means: np.ndarray) -> NASResult:
    scores = np.stack([means - 1.0, means + 1.0])  # two examples whose mean is ``means``
    return NASResult(scores=scores, ids=["a", "b"], labels=np.array([1, 0]), model="m", dataset="d")


def test_training_curves_plot_the_history():
    history = [{"step": s, "split": "train", "metric": "loss", "value": 1.0 / s} for s in (1, 2, 3)]
    history += [{"step": s, "split": "val", "metric": m, "value": v} for s in (0, 3) for m, v in (("loss", 0.7 - s / 10), ("pr_gap", 0.4 - s / 10))]
    res = TrainResult(adapter=None, config=NASAConfig(), heads=[(0, 1), (1, 2)], key_groups=[], skipped_key_groups=[],
                      history=history, before=None, after=None, steps_done=3, best_step=3, stopped_early=False,
                      seconds=1.0, model="tiny")
    fig = training_curves(res)
    by_name = {t.name: t for t in fig.data}
    assert set(by_name) == {"train loss", "val loss", "val pr_gap"}  # no ce curve without a NAS term
    np.testing.assert_allclose(by_name["train loss"].y, [1.0, 0.5, 1 / 3])
    assert list(by_name["val pr_gap"].x) == [0, 3]
    np.testing.assert_allclose(by_name["val pr_gap"].y, [0.4, 0.1])
    assert [s.x0 for s in fig.layout.shapes] == [3]  # the kept step
    assert fig.layout.title.text == "NASA training on tiny: heads 0.1, 1.2"


def test_method_comparison_bars_and_intervals():
    rows = [{"method": m, "dataset": d, "pr_gap": v, "pr_gap_lo": v - 0.1, "pr_gap_hi": v + 0.2, "params": 0, "fit_seconds": 0.0}
            for (m, d, v) in (("base", "x", 0.5), ("nasa", "x", 0.1), ("base", "y", 0.3), ("nasa", "y", 0.2))]
    comp = ComparisonResult(frame=pd.DataFrame(rows), meta={"methods": ["base", "nasa"], "model": "m"})
    fig = method_comparison(comp, metrics=("pr_gap",))
    assert [t.name for t in fig.data] == ["base", "nasa"]
    base, nasa = fig.data
    assert list(base.x) == ["x", "y"] and list(base.y) == [0.5, 0.3] and list(nasa.y) == [0.1, 0.2]
    np.testing.assert_allclose(base.error_y.array, [0.2, 0.2])
    np.testing.assert_allclose(base.error_y.arrayminus, [0.1, 0.1])
    assert nasa.marker.color == METHOD_COLORS["nasa"]


def test_nas_change_heatmap_shows_before_after_and_difference():
    before = np.array([[1.0, -2.0], [0.5, 0.0]])
    after = np.array([[0.0, -2.0], [0.5, 3.0]])
    fig = nas_change_heatmap(_nas(before), _nas(after), heads=[(1, 1)])
    z = [np.asarray(t.z, float) for t in fig.data]
    np.testing.assert_allclose(z[0], before)
    np.testing.assert_allclose(z[1], after)
    np.testing.assert_allclose(z[2], after - before)
    assert {t.zmax for t in fig.data} == {3.0} and {t.zmin for t in fig.data} == {-3.0}  # one scale: max |value|
    assert [(s.x0, s.y0) for s in fig.layout.shapes] == [(0.5, 0.5)] * 3  # the trained head boxed in each panel
    with pytest.raises(ValueError, match="differ in shape"):
        nas_change_heatmap(_nas(before), _nas(np.zeros((3, 2))))


def test_colour_scale_is_the_vocabulary_one():
    fig = nas_change_heatmap(_nas(np.eye(2)), _nas(np.eye(2)))
    import plotly.express as px

    expected = px.colors.get_colorscale(NAS_COLORSCALE)
    got = fig.data[0].colorscale
    assert [c for _, c in got] == [c for _, c in expected]
    np.testing.assert_allclose([x for x, _ in got], [x for x, _ in expected])
