"""report.html: the markdown converter, the finished-study check, the CLI, and a real page in headless Chromium
(offline: no request leaves the machine, no console error, every figure drawn, a screenshot that is not blank)."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import plotly.graph_objects as go
import pytest

from nasa_lens.study import html as rh
from nasa_lens.study.common import REPORT_HTML_FILE, StudyNotFinishedError
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


# ------------------------------------------------------------------------------------------ a real study


TINY = {
    "models": ["tiny-random"],
    "batch_size": 8,
    "data": {"dataset": "arithmetic", "generalisation": ["comparison"], "train_limit": 8, "test_limit": 6},
    "bias": {"n_boot": 50},
    "nas": {"top_k": 3},
    "conditions": {"formats": ["yes-no", "no-yes"], "datasets": [], "limit": 4, "top_k": 3},
    "ablation": {"ks": [1], "n_random": 1, "n_perm": 50},
    "finetune": {"heads": "top:2", "nasa": {"steps": 2, "batch_size": 4, "eval_every": 2}},
    "report": {"png": False, "top_k": 3},
}


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory: pytest.TempPathFactory):
    from nasa_lens.config import StudyConfig
    from nasa_lens.study import run_study

    out = tmp_path_factory.mktemp("study")
    # figures outside the study folder (as `--figures figures` does): links and the bundle go through ../
    return run_study(StudyConfig().with_overrides(TINY), out / "run", figures_dir=out / "figures", progress=False)


def _n_figures(result) -> int:
    return sum(len(f) for f in result.results["figures"].values())


@pytest.mark.slow
def test_study_writes_report_html_mirroring_the_markdown(tiny_study) -> None:
    page = (tiny_study.out_dir / REPORT_HTML_FILE).read_text()
    md = (tiny_study.out_dir / "report.md").read_text()
    sections = [line[3:] for line in md.splitlines() if line.startswith("## ")]
    # the markdown's sections, then the figures it does not show (top-heads bars, condition agreement)
    assert re.findall(r"<h2 id=\"[^\"]+\">(.*?)</h2>", page) == [*sections, "More figures"]
    assert page.count("<section id=") == len(sections) + 2
    assert "Figure 7. nas top heads, tiny-random" in page
    n_tables = len(re.findall(r"^\|---", md, flags=re.M))
    assert page.count('<table class="sortable">') == n_tables
    assert page.count('class="plotly-graph-div"') == _n_figures(tiny_study)  # every figure of the study, inline
    assert "<img" not in page
    assert '<script src="' not in page  # plotly.js inline: nothing to load
    # the numbers are the markdown's
    for cell in re.findall(r"\| (\d+\.\d{3} \[[-\d.]+, [-\d.]+\]) \|", md)[:5]:
        assert cell in page
    shared = rh.report_html(tiny_study, plotlyjs="shared")
    assert '<script src="../figures/plotly.min.js"></script>' in shared and len(shared) < len(page) / 10
    with pytest.raises(NasaLensError, match="plotlyjs"):
        rh.report_html(tiny_study, plotlyjs="cdn")


@pytest.mark.slow
def test_cli_report_rebuilds_it(tiny_study, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tiny_study.out_dir / REPORT_HTML_FILE
    target.unlink()
    assert main(["report", str(tiny_study.out_dir)]) == 0
    assert capsys.readouterr().out.strip() == str(target)
    assert target.is_file()
    load_finished_study(tiny_study.out_dir)  # the rebuilt file is recorded in manifest.json: still a finished study
    # a figure deleted from the study: the folder is no longer a finished study, and the error names the file
    figs = tiny_study.figures_dir
    backup = tmp_path / "nas.html"
    name = f"{tiny_study.results['figures']['tiny-random']['nas_heatmap']}.html"
    shutil.move(figs / name, backup)
    try:
        with pytest.raises(StudyNotFinishedError, match=re.escape(name)):
            load_finished_study(tiny_study.out_dir)
    finally:
        shutil.move(backup, figs / name)


# ------------------------------------------------------------------------------------------ in a browser


def _browser() -> str:
    from nasa_lens.plots import find_browser

    found = find_browser()
    if found is None:
        pytest.skip("no Chromium/Chrome found ($BROWSER_PATH, chromium, google-chrome...): the browser test needs one")
    return found


_SORT_PROBE = """(() => {
  const head = t => [...t.tHead.rows[0].cells].map(th => th.textContent.trim());
  const t = [...document.querySelectorAll('table.sortable')].find(t => head(t).includes('CPU seconds'));
  const col = head(t).indexOf('seconds');
  const read = () => [...t.tBodies[0].rows].map(r => r.cells[col].textContent.trim());
  const before = read(); t.tHead.rows[0].cells[col].click(); const asc = read();
  t.tHead.rows[0].cells[col].click(); return {before, asc, desc: read()};
})()"""


@pytest.mark.slow
def test_report_html_in_headless_chromium(tiny_study, tmp_path: Path) -> None:
    from nasa_lens.browser import check_page

    report = check_page(tiny_study.out_dir / REPORT_HTML_FILE, browser=_browser(), full_page=True, script=_SORT_PROBE)
    assert report.problems() == []
    assert report.requests == [report.url]  # the page itself, nothing else
    assert report.console_errors == []
    assert len(report.figures) == report.n_figures_expected == _n_figures(tiny_study)
    assert all(f["width"] > 100 and f["height"] > 100 for f in report.figures)
    assert report.screenshot[:8] == b"\x89PNG\r\n\x1a\n" and report.n_colors > 200
    probe = report.script_result  # the timings table, sorted by its "seconds" column: numbers, not strings
    values = sorted(float(x) for x in probe["before"])
    assert [float(x) for x in probe["asc"]] == values
    assert [float(x) for x in probe["desc"]] == values[::-1]


@pytest.mark.slow
def test_exported_viewer_page_in_headless_chromium(tiny, questions, tmp_path: Path) -> None:
    from nasa_lens.browser import check_page
    from nasa_lens.plots import save_figure
    from nasa_lens.plots.attention import show_attention

    browser = _browser()
    (page,) = save_figure(show_attention(tiny, questions[0], "0.1,1.3"), tmp_path / "attention", png=False)
    report = check_page(page, browser=browser)
    assert report.problems() == [] and report.requests == [report.url]
    assert len(report.figures) == 1 and report.figures[0]["height"] > 300 and report.n_colors > 100


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
