"""report.html: the markdown converter, the finished-study check and the page checker (a study's real page in
headless Chromium, and the CLI that rebuilds it: tests/integration/test_report_html.py)."""
from __future__ import annotations

import json
from pathlib import Path

import plotly.graph_objects as go
import pytest

from nasa_lens.study import html as rh
from nasa_lens.study.common import StudyNotFinishedError
from nasa_lens.study.pipeline import load_finished_study
from nasa_lens.cli import main
from nasa_lens.vocab import NasaLensError

# ------------------------------------------------------------------------------------------ markdown


def _figure_file(path: Path) -> Path:
    fig = go.Figure(go.Bar(x=["a", "b"], y=[1, 2]))
    fig.write_html(path, include_plotlyjs="directory")
    return path


def test_markdown_to_html_blocks_inline_and_tables(tmp_path: Path) -> None:
    md = ("# Title\n\nSome *italic* and **bold** text with `co<de>` and a [link](x.csv); 2 < 3.\n\n"
          "- first item\n- second *item*\n\n| model | n | value |\n|---|---|---|\n| a | 10 | 0.5 [0.1, 0.9] |\n| b | 2 | n/a |\n")
    out = rh.markdown_to_html(md, tmp_path)
    assert '<h1 id="title">Title</h1>' in out
    assert "<p>Some <em>italic</em> and <strong>bold</strong> text with <code>co&lt;de&gt;</code> and a <a href=\"x.csv\">link</a>; 2 &lt; 3.</p>" in out
    assert "<ul><li>first item</li><li>second <em>item</em></li></ul>" in out
    assert '<table class="sortable"><thead><tr><th title="click to sort">model</th>' in out
    assert "<tr><td>a</td><td>10</td><td>0.5 [0.1, 0.9]</td></tr><tr><td>b</td><td>2</td><td>n/a</td></tr>" in out
    # "+-" and stray asterisks stay text
    assert rh.markdown_to_html("1.0 +- 0.2 and 3 * 4 * 5", tmp_path) == "<p>1.0 +- 0.2 and 3 * 4 * 5</p>"


def test_figures_are_embedded_and_their_png_dropped(tmp_path: Path) -> None:
    figs = tmp_path / "figures"
    figs.mkdir()
    _figure_file(figs / "nas.html")
    (figs / "nas.png").write_bytes(b"png")
    md = ("![Mean NAS](figures/nas.png)\n\n*Mean NAS per head* ([interactive](figures/nas.html))\n\n"
          "*Other*: [missing.html](figures/missing.html)\n")
    out = rh.markdown_to_html(md, tmp_path)
    assert "<img" not in out  # the PNG is replaced by the interactive figure
    assert out.count('class="plotly-graph-div"') == 1 and "Plotly.newPlot" in out
    assert 'style="width:100%;"' in out
    assert "<figcaption>Figure 1. Mean NAS per head" in out
    assert '<a href="figures/missing.html">missing.html</a>' in out  # not a figure on disk: stays a link


# ------------------------------------------------------------------------------------------ unfinished folders


def test_unfinished_study_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(StudyNotFinishedError, match="does not exist"):
        load_finished_study(tmp_path / "nope")
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(StudyNotFinishedError, match="missing timings.json, report.md") as err:
        load_finished_study(tmp_path)
    assert isinstance(err.value, NasaLensError)
    (tmp_path / "timings.json").write_text(json.dumps({"stages": [{"stage": "nas@m", "folder": "nas-m-1", "key": "1", "seconds": 1}]}))
    (tmp_path / "report.md").write_text("# r\n")
    with pytest.raises(StudyNotFinishedError, match="missing stages/nas-m-1/done.json"):
        load_finished_study(tmp_path)
    assert main(["report", str(tmp_path)]) == 2
    assert "not a finished study: missing stages/nas-m-1/done.json" in capsys.readouterr().err
    assert not (tmp_path / "report.html").exists()


# ------------------------------------------------------------------------------------------ in a browser


def _browser() -> str:
    from nasa_lens.plots import find_browser

    found = find_browser()
    if found is None:
        pytest.skip("no Chromium/Chrome found ($BROWSER_PATH, chromium, google-chrome...): the browser test needs one")
    return found


def test_check_page_sees_a_network_request_and_a_console_error(tmp_path: Path) -> None:
    from nasa_lens.browser import check_page

    browser = _browser()
    page = tmp_path / "bad.html"
    page.write_text('<!doctype html><html><body><p>x</p><img src="https://example.com/a.png">'
                    '<script>console.error("boom")</script></body></html>')
    report = check_page(page, browser=browser, screenshot=True)
    problems = report.problems()
    assert "network request: https://example.com/a.png" in problems
    assert any("boom" in p for p in problems)
    assert not any("looks blank" in p for p in problems)  # a letter, antialiased: ~160 colours
    blank = tmp_path / "blank.html"
    blank.write_text("<!doctype html><html><body></body></html>")
    assert check_page(blank, browser=browser).problems() == ["screenshot looks blank: 1 distinct colours"]
