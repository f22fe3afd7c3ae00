"""The NAS explorer in a real Jupyter front end: JupyterLab on 127.0.0.1 (a token), notebook 05 opened in the
system's headless Chromium, every cell run from the page (Run All), a real mouse click on a heatmap cell; the
head card and the attention view must follow, and nothing may be fetched from anywhere but the local server
(the widget JavaScript comes from the installed jupyterlab_widgets / anywidget / jupyterlab-plotly
labextensions). The driver is ``tests/integration/jupyter_frontend.py``; about 1-2 minutes on 2 busy cores."""
from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_explorer_renders_and_answers_a_click_in_jupyterlab(tmp_path: Path) -> None:
    pytest.importorskip("jupyterlab")
    pytest.importorskip("ipywidgets")
    from nasa_lens.plots import find_browser

    if find_browser() is None:
        pytest.skip("no Chromium/Chrome found ($BROWSER_PATH, chromium, google-chrome...): the front-end test needs one")
    from .jupyter_frontend import NOTEBOOK, run_explorer

    seen = run_explorer(tmp_path / "work", model="tiny-random", data="arithmetic", screenshot=tmp_path / "explorer.png")

    # every cell ran, none raised (executed by the kernel the page started, in the order Run All sends them)
    n_code = sum(c["cell_type"] == "code" for c in json.loads(NOTEBOOK.read_text())["cells"])
    assert [c["count"] for c in seen["cells"]] == list(range(1, n_code + 1))
    assert [e for c in seen["cells"] for e in c["errors"]] == []

    # the explorer drew: the NAS heatmap of tiny-random (2 layers x 4 heads), the card and the attention of the
    # head the notebook selected
    before, after = seen["before"], seen["after"]
    heat = before["heatmap"]
    assert heat["type"] == "heatmap" and heat["svg"] > 0 and heat["width"] > 300 and heat["height"] > 200
    assert (before["ny"], before["nx"]) == (2, 4)
    assert "tiny-random on arithmetic" in heat["title"]
    chosen = before["status"].split("head ", 1)[1].split(":", 1)[0]
    assert [d["title"].split(":")[0] for d in before["details"]] == [f"Head {chosen} of tiny-random", f"Attention of {chosen}"]

    # the click on cell (layer, head) opened that head: status, card and attention all changed to it
    clicked = seen["clicked"]
    assert clicked != chosen
    assert after["status"].startswith(f"head {clicked}: card and attention on example 0")
    assert [d["title"].split(":")[0] for d in after["details"]] == [f"Head {clicked} of tiny-random", f"Attention of {clicked}"]
    assert [d["type"] for d in after["details"]] == ["box", "heatmap"]
    assert all(d["svg"] > 0 and d["width"] > 300 and d["height"] > 300 for d in after["details"])
    assert after["heatmap"] == heat  # the heatmap itself stays

    # offline: every request went to the local server (HTTP and the kernel's websockets), the widget code
    # among them from the installed labextensions, not from a CDN; no console error; a screenshot with content
    base = seen["base"]
    assert seen["off_machine"] == []
    assert any(u.startswith(f"{base}/lab/extensions/@jupyter-widgets/jupyterlab-manager/") for u in seen["requests"])
    assert any(u.startswith(f"{base}/lab/extensions/anywidget/") for u in seen["requests"])
    assert any("/api/kernels/" in u for u in seen["websockets"])
    assert seen["console_errors"] == []
    png = (tmp_path / "explorer.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and seen["n_colors"] > 200
