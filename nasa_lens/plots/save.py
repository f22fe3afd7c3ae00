"""Writing figures: HTML always (atomically, with a div id derived from the file name so the same figure
gives the same bytes), PNG through kaleido in a child process when a Chromium is found."""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import plotly.graph_objects as go

from nasa_lens.io import atomic_path, write_text
from nasa_lens.vocab import PLOTLYJS_FILE

__all__ = ["find_browser", "save_figure"]

logger = logging.getLogger(__name__)

_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")

# Run in a child process so a stuck browser can be killed: reads the figure JSON, writes the PNG.
_EXPORT_SCRIPT = """
import sys, plotly.io as pio
fig = pio.read_json(sys.argv[1])
fig.write_image(sys.argv[2], format="png", scale=float(sys.argv[3]))
"""


def find_browser() -> str | None:
    """A Chromium/Chrome executable for PNG export: ``$BROWSER_PATH`` if it exists, else the first of
    ``chromium``, ``chromium-browser``, ``google-chrome``... on ``PATH``; None when there is none."""
    env = os.environ.get("BROWSER_PATH")
    if env and Path(env).is_file():
        return env
    for name in _BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


class _ExportFailed(Exception):
    """The PNG export failed or timed out (already logged)."""


def _export_png(fig: go.Figure, target: Path, browser: str, timeout: float, scale: float) -> bool:
    """Write ``target`` (PNG) with kaleido in a child process; False (and a log line) on failure or timeout."""
    with tempfile.TemporaryDirectory(prefix="nasa-lens-png-") as tmpdir:
        spec = Path(tmpdir) / "figure.json"
        spec.write_text(fig.to_json(), encoding="utf-8")
        env = {**os.environ, "BROWSER_PATH": browser}
        with atomic_path(target) as tmp:
            proc = subprocess.Popen(
                [sys.executable, "-c", _EXPORT_SCRIPT, str(spec), str(tmp), str(scale)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,  # its own process group: a timeout kills the browser it started too
            )
            try:
                _, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                logger.warning("PNG export of %s timed out after %ss; kept the HTML only", target.name, timeout)
                raise _ExportFailed from None
            if proc.returncode != 0 or tmp.stat().st_size == 0:
                last = (err.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
                logger.warning("PNG export of %s failed (%s); kept the HTML only", target.name, last)
                raise _ExportFailed
    return True


def _div_id(name: str) -> str:
    """An HTML id derived from the file name (letters, digits, ``-`` and ``_`` only)."""
    return "nasa-lens-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


def save_figure(
    fig: go.Figure,
    path: str | os.PathLike[str],
    *,
    png: bool = True,
    timeout: float = 60,
    scale: float = 2.0,
    include_plotlyjs: bool | str = True,
) -> list[Path]:
    """Write ``path.html`` (always, atomically) and ``path.png`` when ``png`` and a Chromium is found (see
    :func:`find_browser`); returns the paths written.

    ``include_plotlyjs`` as in plotly's ``write_html``: ``True`` embeds plotly.js (a self-contained ~3.5 MB
    file), ``"directory"`` writes one shared ``plotly.min.js`` beside the HTML (atomically, once; the HTML
    stays viewable offline and weighs kilobytes: what the study uses for its folder of figures), ``"cdn"``
    loads it from the web.

    The PNG is rendered by kaleido in a child process killed after ``timeout`` seconds, so a broken browser
    never hangs the caller; without a browser, or on failure, one log line says so and only the HTML is kept.
    """
    base = Path(path)
    if base.suffix in (".html", ".png"):
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    html = base.with_name(base.name + ".html")
    if include_plotlyjs == "directory":
        bundle = base.parent / PLOTLYJS_FILE
        if not bundle.is_file():  # written here, atomically, so that concurrent writers never see half a file
            from plotly.offline import get_plotlyjs

            write_text(bundle, get_plotlyjs())
    with atomic_path(html) as tmp:
        # A fixed div id (plotly draws a random one): the same figure always gives the same bytes.
        fig.write_html(tmp, include_plotlyjs=include_plotlyjs, div_id=_div_id(base.name))
    written = [html]
    if png:
        browser = find_browser()
        if browser is None:
            logger.warning(
                "no Chromium found for PNG export (tried $BROWSER_PATH, %s); wrote %s only "
                "(install one, e.g. `apt-get install -y chromium`, or set BROWSER_PATH)",
                ", ".join(_BROWSERS),
                html.name,
            )
        else:
            target = base.with_name(base.name + ".png")
            try:
                _export_png(fig, target, browser, timeout, scale)
                written.append(target)
            except _ExportFailed:
                pass
    return written
