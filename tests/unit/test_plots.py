"""Figures: the data they show equals the result they were given; save_figure writes files and never hangs."""
from __future__ import annotations

import logging

import numpy as np
import plotly.graph_objects as go
import pytest

from nasa_lens import plots
from nasa_lens.nas import NASResult
from nasa_lens.plots import head_distributions, heatmap_grid, nas_heatmap, save_figure, top_heads_bar


def make_result(scores, labels=None, preds=None, **kw) -> NASResult:
    scores = np.asarray(scores, float)
    n = scores.shape[0]
    return NASResult(
        scores=scores,
        ids=[f"e{i}" for i in range(n)],
        labels=np.asarray(labels if labels is not None else [1, 0] * (n // 2) + [1] * (n % 2)),
        preds=None if preds is None else np.asarray(preds),
        model="m",
        dataset="d",
        **kw,
    )


@pytest.fixture()
def result() -> NASResult:
    # 4 examples x 2 layers x 3 heads with hand-checkable means and stderrs
    base = np.array([[0.5, -1.0, 2.0], [0.0, 3.0, -0.25]])
    offsets = np.array([-1.0, 1.0, -1.0, 1.0])[:, None, None]
    return make_result(base[None] + offsets * np.array([[0.0, 1.0, 2.0], [0.5, 0.0, 1.0]])[None])


def test_nas_heatmap_values_scale_and_hover(result):
    fig = nas_heatmap(result)
    (trace,) = fig.data
    np.testing.assert_allclose(np.asarray(trace.z, float), [[0.5, -1.0, 2.0], [0.0, 3.0, -0.25]])
    assert trace.zmid == 0
    assert trace.zmin == -3.0 and trace.zmax == 3.0  # symmetric around 0, from the largest |mean|
    # red (positive) at the top of the scale: the reversed RdBu
    assert trace.colorscale[-1][1] == go.Figure(go.Heatmap(colorscale="RdBu")).data[0].colorscale[0][1]
    # stderr of head (0, 2): offsets +-2 -> sd = 2 * sqrt(4/3) -> stderr = sd / 2 = 1.1547
    stderr = result.stderr
    assert stderr[0, 2] == pytest.approx(2 * np.sqrt(4 / 3) / 2)
    text = trace.text[0][2]
    assert "layer 0" in text and "head 2" in text and "NAS mean 2.0000" in text and "stderr 1.1547" in text
    assert trace.text[1][1].endswith("n 4") and "stderr 0.0000" in trace.text[1][1]
    assert "%{text}" in trace.hovertemplate
    assert fig.layout.yaxis.autorange == "reversed"


def test_top_heads_bar_order_and_error_bars(result):
    fig = top_heads_bar(result, k=3)
    (bar,) = fig.data
    assert list(bar.x) == ["1.1", "0.2", "0.0"]
    np.testing.assert_allclose(bar.y, [3.0, 2.0, 0.5])
    np.testing.assert_allclose(bar.error_y.array, [result.stderr[1, 1], result.stderr[0, 2], result.stderr[0, 0]])
    assert bar.error_y.visible


def test_head_distributions_per_head_and_split(result):
    fig = head_distributions(result, [(0, 2), (1, 0)])
    assert [t.name for t in fig.data] == ["0.2", "1.0"]
    np.testing.assert_allclose(fig.data[0].y, result.scores[:, 0, 2])
    split = head_distributions(result, [(0, 2)], by="label")
    assert [t.name for t in split.data] == ["label yes", "label no"]
    np.testing.assert_allclose(split.data[0].y, result.scores[result.labels == 1, 0, 2])
    assert split.layout.boxmode == "group"
    with pytest.raises(ValueError, match="at least one head"):
        head_distributions(result, [])
    with pytest.raises(ValueError, match="the result has no predictions"):
        head_distributions(result, [(0, 0)], by="pred")


def test_heatmap_grid_shares_one_colour_scale(result):
    other = make_result(result.scores * -2)
    fig = heatmap_grid({"Yes/No": result, "No/Yes": other})
    assert len(fig.data) == 2
    assert all(t.coloraxis == "coloraxis" for t in fig.data)
    assert fig.layout.coloraxis.cmin == -6.0 and fig.layout.coloraxis.cmax == 6.0  # max |mean| over both
    np.testing.assert_allclose(np.asarray(fig.data[1].z, float), other.mean)
    assert [a.text for a in fig.layout.annotations] == ["Yes/No", "No/Yes"]
    with pytest.raises(ValueError, match="at least one result"):
        heatmap_grid({})


def test_save_figure_html_and_png_skipped_without_browser(result, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(plots.save, "find_browser", lambda: None)
    with caplog.at_level(logging.WARNING, logger="nasa_lens.plots"):
        paths = save_figure(nas_heatmap(result), tmp_path / "sub" / "fig")
    assert paths == [tmp_path / "sub" / "fig.html"]
    html = paths[0].read_text()
    assert "plotly" in html.lower() and len(html) > 1000
    assert not (tmp_path / "sub" / "fig.png").exists()
    assert any("no Chromium found" in r.getMessage() for r in caplog.records)
    assert not [p for p in (tmp_path / "sub").iterdir() if p.name.startswith(".")]  # no temp files left
    assert save_figure(go.Figure(), tmp_path / "plain.html", png=False) == [tmp_path / "plain.html"]


def test_save_figure_directory_mode_shares_one_plotly_bundle(result, tmp_path):
    from plotly.offline import get_plotlyjs

    a = save_figure(nas_heatmap(result), tmp_path / "a", png=False, include_plotlyjs="directory")[0]
    b = save_figure(go.Figure(), tmp_path / "b", png=False, include_plotlyjs="directory")[0]
    bundle = tmp_path / "plotly.min.js"
    assert bundle.read_text(encoding="utf-8") == get_plotlyjs()  # complete, written once
    for html in (a, b):
        text = html.read_text()
        assert 'src="plotly.min.js"' in text
        assert len(text) < len(get_plotlyjs()) / 10  # the bundle is not embedded
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "b.html", "plotly.min.js"]


def test_find_browser_prefers_browser_path(tmp_path, monkeypatch):
    fake = tmp_path / "my-chrome"
    fake.write_text("#!/bin/sh\n")
    monkeypatch.setenv("BROWSER_PATH", str(fake))
    assert plots.find_browser() == str(fake)
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "absent"))
    monkeypatch.setattr(plots.save.shutil, "which", lambda name: None)
    assert plots.find_browser() is None


def test_save_figure_png_export_timeout_keeps_html(result, tmp_path, monkeypatch, caplog):
    # A "browser" the child never gets to use: the export script itself is replaced by one that hangs.
    monkeypatch.setattr(plots.save, "find_browser", lambda: "/bin/true")
    monkeypatch.setattr(plots.save, "_EXPORT_SCRIPT", "import time; time.sleep(30)")
    with caplog.at_level(logging.WARNING, logger="nasa_lens.plots"):
        paths = save_figure(nas_heatmap(result), tmp_path / "fig", timeout=1)
    assert paths == [tmp_path / "fig.html"]
    assert not (tmp_path / "fig.png").exists()
    assert any("timed out" in r.getMessage() for r in caplog.records)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_save_figure_png_failure_keeps_html(result, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(plots.save, "find_browser", lambda: "/bin/true")
    monkeypatch.setattr(plots.save, "_EXPORT_SCRIPT", "raise SystemExit('no renderer here')")
    with caplog.at_level(logging.WARNING, logger="nasa_lens.plots"):
        paths = save_figure(nas_heatmap(result), tmp_path / "fig")
    assert paths == [tmp_path / "fig.html"]
    assert any("failed (no renderer here)" in r.getMessage() for r in caplog.records)


def test_save_figure_html_is_byte_stable(result, tmp_path):
    """The same figure written twice (even to two folders) gives identical HTML bytes: the div id is derived
    from the file name, not drawn at random (so regenerated committed figures do not churn)."""
    a = save_figure(nas_heatmap(result), tmp_path / "one" / "fig", png=False)[0]
    b = save_figure(nas_heatmap(result), tmp_path / "two" / "fig", png=False)[0]
    assert a.read_bytes() == b.read_bytes()
    c = save_figure(nas_heatmap(result), tmp_path / "one" / "other name", png=False, include_plotlyjs="directory")[0]
    assert 'id="nasa-lens-other-name"' in c.read_text()
