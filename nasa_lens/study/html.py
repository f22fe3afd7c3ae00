"""``report.html``: the study's report as ONE file that opens from disk, offline, every figure interactive.

The text is the markdown report's: each section function of :mod:`nasa_lens.study.report`
(:func:`~nasa_lens.study.report.report_sections`) gives a title and markdown lines, converted here by a small converter that knows the few constructs the report uses (headings, paragraphs, bullet
lists, pipe tables, bold/italic/code, links, images). Where the markdown shows a figure (a PNG with a link to
its interactive ``.html``) the HTML report embeds the figure itself: its plotly ``div`` and script are taken
from the study's figure file, so the figure is the very one the study drew. Tables sort by a click on a
column header (a few lines of inline JavaScript; numbers sort as numbers). plotly.js is inlined (default,
``plotlyjs="inline"``: one self-contained file of ~5 MB) or loaded from the ``plotly.min.js`` the study
already publishes beside its figures (``plotlyjs="shared"``: a small file that needs that folder). Nothing
is requested from any network.

:func:`nasa_lens.study.pipeline.load_finished_study` refuses a folder that is not a finished study, naming
what is missing (``nasa-lens report DIR`` reads the folder through it).
"""
from __future__ import annotations

import html
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nasa_lens.io import write_text
from nasa_lens.study.common import REPORT_HTML_FILE, StudyNotFinishedError
from nasa_lens.vocab import PLOTLYJS_FILE, PLOTLYJS_MODES, NasaLensError

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.study.result import StudyResult

__all__ = ["REPORT_HTML_FILE", "PLOTLYJS_MODES", "markdown_to_html", "report_html", "write_report_html"]

_BUNDLE = PLOTLYJS_FILE


# ------------------------------------------------------------------------------------------- markdown


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def _inline(text: str) -> str:
    """Inline markdown (code, images, links, bold, italic) on HTML-escaped text."""
    codes: list[str] = []

    def keep(m: re.Match[str]) -> str:
        codes.append(f"<code>{html.escape(m.group(1), quote=False)}</code>")
        return f"\x00{len(codes) - 1}\x00"

    text = re.sub(r"`([^`]+)`", keep, text)
    text = html.escape(text, quote=False)
    text = re.sub(r"!\[([^\]]*)\]\(([^)\s]+)\)", lambda m: f'<img alt="{html.escape(m.group(1))}" src="{html.escape(m.group(2))}">', text)
    text = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", lambda m: f'<a href="{html.escape(m.group(2))}">{m.group(1)}</a>', text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"(?<![\w*])\*(?![\s*])(.+?)(?<![\s*])\*(?![\w*])", r"<em>\1</em>", text)
    return re.sub(r"\x00(\d+)\x00", lambda m: codes[int(m.group(1))], text)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


@dataclass
class _Figure:
    """A figure reference found in the markdown: the figure's HTML file and its caption."""

    path: Path
    caption: str


def _figure_of(par: str, base: Path) -> _Figure | None:
    """The figure a markdown paragraph shows (a link to a plotly ``.html`` figure), or None."""
    links = re.findall(r"\]\(([^)\s]+\.html)\)", par)
    for link in links:
        path = (base / link).resolve()
        if path.is_file() and "plotly-graph-div" in path.read_text(encoding="utf-8", errors="replace")[:200000]:
            cap = re.search(r"(?<![\w*])\*(?![\s*])(.+?)(?<![\s*])\*(?![\w*])", par)
            return _Figure(path, cap.group(1) if cap else path.stem)
    return None


def _is_figure_image(par: str, base: Path) -> bool:
    """A paragraph that is only the PNG of a figure whose interactive ``.html`` lies beside it."""
    m = re.fullmatch(r"!\[[^\]]*\]\(([^)\s]+)\.png\)", par.strip())
    return bool(m) and (base / f"{m.group(1)}.html").is_file()


_FIG_RE = re.compile(r'(<div id="([^"]+)" class="plotly-graph-div"[^>]*></div>)\s*(<script[^>]*>.*?</script>)', re.S)


def _figure_html(fig: _Figure, number: int) -> str:
    """The figure's own plotly ``div`` and drawing script, lifted from its HTML file, in a ``<figure>``."""
    source = fig.path.read_text(encoding="utf-8")
    m = _FIG_RE.search(source)
    if m is None:
        return f'<p class="missing">figure {html.escape(fig.path.name)} has no plotly figure</p>'
    div = re.sub(r'style="[^"]*"', 'style="width:100%;"', m.group(1), count=1)
    return (f'<figure class="plot" id="figure-{number}">{div}{m.group(3)}'
            f"<figcaption>Figure {number}. {_inline(fig.caption)} "
            f'<span class="src">({html.escape(fig.path.name)})</span></figcaption></figure>')


def _blocks(markdown: str) -> Iterator[tuple[str, list[str]]]:
    """Markdown -> ``(kind, lines)`` blocks: heading, table, list, paragraph."""
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif re.match(r"#{1,6} ", line):
            yield "heading", [line]
            i += 1
        elif line.lstrip().startswith("|"):
            j = i
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                j += 1
            yield "table", lines[i:j]
            i = j
        elif re.match(r"\s*[-*] ", line):
            j = i
            while j < len(lines) and lines[j].strip() and not re.match(r"#{1,6} |\s*\|", lines[j]):
                j += 1
            yield "list", lines[i:j]
            i = j
        else:
            j = i
            while j < len(lines) and lines[j].strip() and not re.match(r"#{1,6} |\s*\||\s*[-*] ", lines[j]):
                j += 1
            yield "paragraph", lines[i:j]
            i = j


class _Converter:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.n_figures = 0
        self.n_tables = 0
        self.embedded: set[Path] = set()

    def convert(self, markdown: str) -> str:
        out: list[str] = []
        for kind, lines in _blocks(markdown):
            if kind == "heading":
                level = len(lines[0]) - len(lines[0].lstrip("#"))
                text = lines[0][level:].strip()
                out.append(f'<h{level} id="{_slug(text)}">{_inline(text)}</h{level}>')
            elif kind == "table":
                out.append(self._table(lines))
            elif kind == "list":
                items, cur = [], []
                for line in lines:
                    if re.match(r"\s*[-*] ", line):
                        if cur:
                            items.append(" ".join(cur))
                        cur = [re.sub(r"^\s*[-*] ", "", line)]
                    else:
                        cur.append(line.strip())
                items.append(" ".join(cur))
                out.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in items) + "</ul>")
            else:
                par = " ".join(x.strip() for x in lines)
                if _is_figure_image(par, self.base):
                    continue
                fig = _figure_of(par, self.base)
                if fig is not None:
                    out.append(self.figure(fig))
                else:
                    out.append(f"<p>{_inline(par)}</p>")
        return "\n".join(out)

    def figure(self, fig: _Figure) -> str:
        self.n_figures += 1
        self.embedded.add(fig.path)
        return _figure_html(fig, self.n_figures)

    def _table(self, lines: list[str]) -> str:
        rows = [_cells(x) for x in lines]
        if len(rows) >= 2 and all(re.fullmatch(r":?-{3,}:?", c) for c in rows[1]):
            head, body = rows[0], rows[2:]
        else:
            head, body = [], rows
        self.n_tables += 1
        th = "".join(f'<th title="click to sort">{_inline(c)}</th>' for c in head)
        tb = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body)
        return f'<table class="sortable"><thead><tr>{th}</tr></thead><tbody>{tb}</tbody></table>'


def markdown_to_html(markdown: str, base: str | os.PathLike[str] = ".") -> str:
    """The report's markdown as HTML (figures linked relative to ``base`` are embedded; see module doc)."""
    return _Converter(Path(base)).convert(markdown)


# ------------------------------------------------------------------------------------------- the page

_CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;margin:0;background:#fafafa}
main{max-width:1180px;margin:0 auto;padding:16px 28px 60px;background:#fff}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:6px 28px;z-index:10;font-size:13px}
nav a{margin-right:14px;color:#2166ac;text-decoration:none}
h1{font-size:26px;margin:18px 0 6px}h1,h2,section{scroll-margin-top:64px}h2{font-size:20px;margin-top:34px;border-bottom:1px solid #eee;padding-bottom:4px}
table{border-collapse:collapse;margin:10px 0 16px;font-size:13px;display:block;overflow-x:auto}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;white-space:nowrap}
th{background:#f0f3f7;cursor:pointer;user-select:none}th.asc:after{content:" \\25B2"}th.desc:after{content:" \\25BC"}
tbody tr:nth-child(even){background:#fafbfc}
figure.plot{margin:16px 0 26px;border:1px solid #eee;padding:6px;overflow-x:auto}
figcaption{font-size:13px;color:#555;margin-top:4px}figcaption .src{color:#999}
code{background:#f3f3f3;padding:0 3px;border-radius:3px}
footer{font-size:12px;color:#777;margin-top:40px}
"""

_SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var asc = !th.classList.contains('asc');
      table.querySelectorAll('th').forEach(function (h) { h.classList.remove('asc', 'desc'); });
      th.classList.add(asc ? 'asc' : 'desc');
      function key(row) {
        var t = row.cells[col] ? row.cells[col].textContent.trim() : '';
        var m = t.match(/^[+-]?\\d[\\d,]*(\\.\\d+)?(e[+-]?\\d+)?/i);
        return m ? parseFloat(m[0].replace(/,/g, '')) : t.toLowerCase();
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (typeof x !== typeof y) { return (typeof x === 'number' ? -1 : 1) * (asc ? 1 : -1); }
        return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def report_html(result: StudyResult, *, plotlyjs: str = "inline", folder: str | os.PathLike[str] | None = None) -> str:
    """The HTML report of a finished study (see the module docstring); ``folder``: where the page will lie
    (default the study folder), for the relative path to the shared bundle."""
    from nasa_lens.study.report import report_sections

    if plotlyjs not in PLOTLYJS_MODES:
        raise NasaLensError(f"plotlyjs must be one of {list(PLOTLYJS_MODES)}, got {plotlyjs!r}")
    conv = _Converter(result.out_dir)
    body, nav = [], []
    for section in report_sections(result):  # the sections of report.md, each converted on its own
        content = conv.convert("\n".join(line for line in section.lines if line is not None))
        level = section.level
        heading = f'<h{level} id="{section.slug}">{_inline(section.title)}</h{level}>'
        body.append(f'<section id="section-{section.slug}">\n{heading}\n{content}\n</section>')
        if level > 1:
            nav.append(f'<a href="#{section.slug}">{_inline(section.title)}</a>')
    more = [(model, key, result.figures_dir / f"{name}.html") for model, figs in result.results.get("figures", {}).items()
            for key, name in figs.items()]
    more = [(m, k, p) for m, k, p in more if p.is_file() and p.resolve() not in conv.embedded]
    if more:  # the study's figures report.md does not show: here too, so that the page holds every figure
        title = "More figures"
        parts = [f'<h2 id="{_slug(title)}">{title}</h2>', "<p>The study's figures that the sections above do not show.</p>"]
        parts += [conv.figure(_Figure(p.resolve(), f"{k.replace('_', ' ')}, {m.replace('_', ' ')}")) for m, k, p in more]
        body.append(f'<section id="section-{_slug(title)}">\n' + "\n".join(parts) + "\n</section>")
        nav.append(f'<a href="#{_slug(title)}">{title}</a>')
    if plotlyjs == "inline":
        from plotly.offline import get_plotlyjs

        bundle = f"<script>{get_plotlyjs()}</script>"
    else:
        shared = result.figures_dir / _BUNDLE
        if not shared.is_file():
            raise StudyNotFinishedError(f"{shared} not found: the shared plotly bundle (use plotlyjs='inline')")
        rel = Path(os.path.relpath(shared, folder if folder is not None else result.out_dir)).as_posix()
        bundle = f'<script src="{html.escape(rel)}"></script>'
    title = f"nasa-lens study report: {', '.join(result.config.models)} on {result.config.data.dataset}"
    return "\n".join([
        "<!doctype html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">', f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style>", "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>", bundle, "</head>",
        "<body>", f"<nav>{''.join(nav)}</nav>", "<main>", *body,
        f"<footer>{conv.n_figures} interactive figures, {conv.n_tables} sortable tables (click a column header). "
        f"Written by nasa-lens from {html.escape(str(result.out_dir))}; opens offline.</footer>",
        "</main>", f"<script>{_SORT_JS}</script>", "</body>", "</html>", "",
    ])


def write_report_html(result: StudyResult, path: str | os.PathLike[str] | None = None, *, plotlyjs: str = "inline") -> Path:
    """Write ``report.html`` (default: beside ``report.md``) atomically for a finished study (read a folder with
    :func:`nasa_lens.study.pipeline.load_finished_study`)."""
    target = Path(path) if path is not None else result.out_dir / REPORT_HTML_FILE
    return write_text(target, report_html(result, plotlyjs=plotlyjs, folder=target.parent))
