"""Figures. Every function returns a plotly ``Figure`` (never shows it) and does no computation beyond
reshaping what a result object already holds; :func:`save_figure` writes one to disk.

Colour convention for NAS: one diverging scale centred at 0, red = positive = attends to "No" more than
to "Yes" (negative-biased), blue = "Yes"-leaning.

Sections: NAS figures, then file output. Add new figures in their own section above "files".
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from nasa_lens.heads import Head, format_head
from nasa_lens.io import atomic_path, write_text

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.nas import NASResult

__all__ = [
    "NAS_COLORSCALE",
    "nas_heatmap",
    "top_heads_bar",
    "head_distributions",
    "heatmap_grid",
    "find_browser",
    "save_figure",
]

logger = logging.getLogger(__name__)

NAS_COLORSCALE = "RdBu_r"  # reversed RdBu: red = positive (No-leaning), blue = negative (Yes-leaning)
_LABEL_COLORS = {"yes": "#2166ac", "no": "#b2182b"}


# ------------------------------------------------------------------------------------------------ NAS


def _hover_text(mean: np.ndarray, stderr: np.ndarray, n: int) -> list[list[str]]:
    return [
        [
            f"head {layer}.{head}<br>layer {layer}, head {head}<br>NAS mean {mean[layer, head]:.4f}"
            f"<br>stderr {stderr[layer, head]:.4f}<br>n {n}"
            for head in range(mean.shape[1])
        ]
        for layer in range(mean.shape[0])
    ]


def _nas_trace(result: NASResult, **kwargs) -> go.Heatmap:
    mean, stderr = result.mean, result.stderr
    return go.Heatmap(
        z=mean,
        x=list(range(result.n_heads)),
        y=list(range(result.n_layers)),
        text=_hover_text(mean, stderr, result.n),
        hovertemplate="%{text}<extra></extra>",
        **kwargs,
    )


def _symmetric_limit(arrays: Sequence[np.ndarray]) -> float:
    finite = [np.abs(a[np.isfinite(a)]) for a in arrays]
    top = max((float(f.max()) for f in finite if f.size), default=0.0)
    return top if top > 0 else 1.0


def _default_title(what: str, result: NASResult) -> str:
    return f"{what}: {result.model} on {result.dataset}<br><sup>{result.format}, positions={result.positions}, n={result.n}</sup>"


def nas_heatmap(result: NASResult, title: str | None = None) -> go.Figure:
    """Mean NAS per head, layers down (layer 0 at the top) and heads across, on one diverging scale centred
    at 0 (red = attends to "No"). Hover shows layer, head, mean, stderr and n."""
    limit = _symmetric_limit([result.mean])
    fig = go.Figure(
        _nas_trace(
            result,
            colorscale=NAS_COLORSCALE,
            zmid=0,
            zmin=-limit,
            zmax=limit,
            colorbar={"title": {"text": "mean NAS"}},
        )
    )
    fig.update_layout(
        title={"text": title or _default_title("Negative attention score", result), "font": {"size": 14}},
        xaxis_title="head",
        yaxis_title="layer",
        width=max(420, 60 * result.n_heads + 200),
        height=max(420, 22 * result.n_layers + 160),
    )
    fig.update_yaxes(autorange="reversed", dtick=1 if result.n_layers <= 40 else None)
    fig.update_xaxes(dtick=1)
    return fig


def top_heads_bar(result: NASResult, k: int = 10, title: str | None = None) -> go.Figure:
    """The ``k`` highest-NAS heads as bars (rank 1 on the left) with +-1 standard-error bars."""
    heads = result.top_heads(k)
    mean, stderr = result.mean, result.stderr
    fig = go.Figure(
        go.Bar(
            x=[format_head(h) for h in heads],
            y=[mean[h] for h in heads],
            error_y={"type": "data", "array": [stderr[h] for h in heads], "visible": True},
            marker_color="#b2182b",
            hovertemplate="head %{x}<br>NAS mean %{y:.4f}<br>stderr %{error_y.array:.4f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title or f"Top {len(heads)} NAS heads ({result.format}, {result.positions}, n={result.n}; bars: +-1 stderr)",
        xaxis_title="head (layer.head)",
        yaxis_title="mean NAS",
        xaxis={"type": "category"},
    )
    return fig


def head_distributions(result: NASResult, heads: Sequence[Head], *, by: str | None = None, title: str | None = None) -> go.Figure:
    """Per-example NAS of some heads as box plots (all points shown). ``by="label"`` or ``"pred"`` splits
    each head's box by the gold label or the model's answer."""
    names = [format_head(h) for h in heads]
    if not names:
        raise ValueError("head_distributions needs at least one head")
    fig = go.Figure()
    if by is None:
        for name, (layer, head) in zip(names, heads):
            fig.add_trace(go.Box(y=result.scores[:, layer, head], name=name, boxpoints="all", jitter=0.4, pointpos=0))
    else:
        if by not in ("label", "pred"):
            raise ValueError(f"by must be None, 'label' or 'pred', got {by!r}")
        key = result.labels if by == "label" else result.preds
        if key is None:
            raise ValueError("the result has no predictions to split by")
        for value, group in ((1, "yes"), (0, "no")):
            rows = key == value
            fig.add_trace(
                go.Box(
                    x=np.repeat(names, int(rows.sum())),
                    y=np.concatenate([result.scores[rows, layer, head] for layer, head in heads]),
                    name=f"{by} {group}",
                    marker_color=_LABEL_COLORS[group],
                    boxpoints="all",
                    jitter=0.4,
                    pointpos=0,
                )
            )
        fig.update_layout(boxmode="group")
    fig.update_layout(
        title=title or f"Per-example NAS ({result.format}, {result.positions}, n={result.n})",
        xaxis_title="head (layer.head)",
        yaxis_title="NAS",
        xaxis={"type": "category"},
    )
    return fig


def heatmap_grid(results: dict[str, NASResult], title: str | None = None, cols: int | None = None) -> go.Figure:
    """Mean-NAS heatmaps of several conditions side by side on ONE shared colour scale centred at 0."""
    if not results:
        raise ValueError("heatmap_grid needs at least one result")
    names = list(results)
    cols = cols or len(names)
    rows = -(-len(names) // cols)
    limit = _symmetric_limit([r.mean for r in results.values()])
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=names, shared_yaxes=True, horizontal_spacing=0.03)
    for i, name in enumerate(names):
        fig.add_trace(_nas_trace(results[name], coloraxis="coloraxis", name=name), row=i // cols + 1, col=i % cols + 1)
    first = next(iter(results.values()))
    fig.update_layout(
        title=title or f"Mean NAS by condition ({first.positions}, shared colour scale)",
        coloraxis={"colorscale": NAS_COLORSCALE, "cmin": -limit, "cmax": limit, "colorbar": {"title": {"text": "mean NAS"}}},
        width=max(500, cols * (40 * first.n_heads + 80) + 120),
        height=max(420, rows * (20 * first.n_layers + 80) + 120),
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text="head")
    fig.update_yaxes(title_text="layer", col=1)
    return fig


# ------------------------------------------------------------------------------------------------ files

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
        bundle = base.parent / "plotly.min.js"
        if not bundle.is_file():  # written here, atomically, so that concurrent writers never see half a file
            from plotly.offline import get_plotlyjs

            write_text(bundle, get_plotlyjs())
    with atomic_path(html) as tmp:
        fig.write_html(tmp, include_plotlyjs=include_plotlyjs)
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

