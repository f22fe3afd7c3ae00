"""Figures written as PNG by a real headless browser."""
from __future__ import annotations

import pytest

from nasa_lens import plots
from nasa_lens.plots import nas_heatmap, save_figure
from unit.test_plots import result  # a fixture


@pytest.mark.slow
def test_save_figure_writes_png_with_a_real_browser(result, tmp_path):
    if plots.find_browser() is None:
        pytest.skip("no Chromium on this machine")
    paths = save_figure(nas_heatmap(result), tmp_path / "fig", timeout=120)
    assert paths == [tmp_path / "fig.html", tmp_path / "fig.png"]
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
