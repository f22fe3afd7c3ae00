"""report.html of a tiny-random study, and pages opened in headless Chromium."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from nasa_lens.cli import main
from nasa_lens.study import html as rh
from nasa_lens.study.common import REPORT_HTML_FILE, StudyNotFinishedError
from nasa_lens.study.pipeline import load_finished_study
from nasa_lens.vocab import NasaLensError
from unit.test_report_html import _browser


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
