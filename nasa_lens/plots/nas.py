"""NAS figures: the per-head heatmap, the top heads with error bars, per-head distributions, a grid of
heatmaps on one shared scale. Every function returns a plotly ``Figure`` (never shows it) and does no
computation beyond reshaping what a result object already holds.

Colour convention for NAS: one diverging scale centred at 0 (:data:`nasa_lens.vocab.NAS_COLORSCALE`), red =
positive = attends to "No" more than to "Yes" (negative-biased), blue = "Yes"-leaning.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from nasa_lens.heads import Head, format_head
from nasa_lens.vocab import NAS_COLORSCALE

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.nas import NASResult

__all__ = ["NAS_COLORSCALE", "nas_heatmap", "top_heads_bar", "head_distributions", "heatmap_grid"]

_LABEL_COLORS = {"yes": "#2166ac", "no": "#b2182b"}


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
