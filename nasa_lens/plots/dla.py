"""Figures of the mechanism: DLA split by source, NAS against via_no, and path patching.

Every function returns a plotly ``Figure`` (never shows it). DLA is ``logit(Yes) - logit(No)``; its
diverging scales are reversed so that red = negative = pushes the answer towards "No", the same reading as
NAS's red (attends to "No").
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from nasa_lens.heads import format_head, ranked_heads

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.dla import DLAResult
    from nasa_lens.causal.paths import PathPatchingResult

__all__ = ["via_no_heatmap", "nas_vs_via_no", "split_bars", "path_heatmap"]

DLA_COLORSCALE = "RdBu"  # red = negative DLA = pushes towards "No" (same reading as NAS's red)
_SOURCE_COLORS = {"via_yes": "#2166ac", "via_no": "#b2182b", "via_other": "#999999"}


def _limit(values: np.ndarray) -> float:
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0


def via_no_heatmap(result: DLAResult, source: str = "via_no", title: str | None = None) -> go.Figure:
    """Mean ``source`` (default ``via_no``) per head, layers down and heads across; red = pushes the answer
    towards "No". Hover: the head's total and its three parts."""
    mean = result.mean(source)
    parts = {s: result.mean(s) for s in ("total", "via_yes", "via_no", "via_other")}
    hover = [[f"head {layer}.{h}<br>" + "<br>".join(f"{k} {v[layer, h]:+.4f}" for k, v in parts.items()) + f"<br>n {result.n}"
              for h in range(result.n_heads)] for layer in range(result.n_layers)]
    lim = _limit(mean)
    fig = go.Figure(go.Heatmap(z=mean, x=list(range(result.n_heads)), y=list(range(result.n_layers)), text=hover,
                               hoverinfo="text", colorscale=DLA_COLORSCALE, zmid=0, zmin=-lim, zmax=lim,
                               colorbar={"title": {"text": f"mean {source}"}}))
    fig.update_layout(title={"text": title or f"DLA {source} per head ({result.model}, {result.dataset}, n={result.n}; red = towards No)",
                             "font": {"size": 14}},
                      xaxis_title="head", yaxis_title="layer", width=max(420, 60 * result.n_heads + 200),
                      height=max(420, 22 * result.n_layers + 160))
    fig.update_yaxes(autorange="reversed", dtick=1 if result.n_layers <= 40 else None)
    fig.update_xaxes(dtick=1)
    return fig


def nas_vs_via_no(nas_mean: np.ndarray, result: DLAResult, *, label_top: int = 8, title: str | None = None) -> go.Figure:
    """Scatter of each head's mean NAS (x) against its mean ``via_no`` (y); the ``label_top`` heads with the
    most negative via_no and the ``label_top`` highest-NAS heads are labelled."""
    via_no = result.mean("via_no")
    nas_mean = np.asarray(nas_mean, dtype=float)
    if nas_mean.shape != via_no.shape:
        raise ValueError(f"NAS {nas_mean.shape} and DLA {via_no.shape} cover different heads")
    L, H = via_no.shape
    names = [format_head((layer, h)) for layer in range(L) for h in range(H)]
    top = set(ranked_heads(-via_no)[:label_top]) | set(ranked_heads(nas_mean)[:label_top])
    labels = [format_head((layer, h)) if (layer, h) in top else "" for layer in range(L) for h in range(H)]
    fig = go.Figure(go.Scatter(x=nas_mean.reshape(-1), y=via_no.reshape(-1), mode="markers+text", text=labels,
                               textposition="top center", customdata=names, marker={"size": 7, "color": "#b2182b", "opacity": 0.7},
                               hovertemplate="head %{customdata}<br>NAS %{x:.3f}<br>via_no %{y:+.4f}<extra></extra>"))
    fig.add_hline(y=0, line={"color": "#888", "width": 1})
    fig.add_vline(x=0, line={"color": "#888", "width": 1})
    fig.update_layout(title=title or f"Attending to 'No' (NAS) vs carrying it into the answer (via_no), n={result.n}",
                      xaxis_title="mean NAS (positive = attends to No)", yaxis_title="mean via_no (negative = pushes towards No)",
                      width=720, height=560)
    return fig


def split_bars(result: DLAResult, k: int = 10, by: str = "total", title: str | None = None) -> go.Figure:
    """Stacked bars of the ``k`` heads with the largest ``|mean by|``: their via_yes / via_no / via_other."""
    score = np.abs(result.mean(by))
    heads = ranked_heads(score)[:k]
    x = [format_head(h) for h in heads]
    fig = go.Figure([go.Bar(name=s, x=x, y=[result.mean(s)[h] for h in heads], marker_color=c,
                            hovertemplate=f"head %{{x}}<br>{s} %{{y:+.4f}}<extra></extra>") for s, c in _SOURCE_COLORS.items()])
    fig.add_trace(go.Scatter(name="total", x=x, y=[result.mean("total")[h] for h in heads], mode="markers",
                             marker={"symbol": "diamond", "size": 10, "color": "black"},
                             error_y={"type": "data", "array": [result.stderr("total")[h] for h in heads], "visible": True}))
    fig.update_layout(barmode="relative", xaxis={"type": "category"}, xaxis_title="head (layer.head)",
                      yaxis_title="mean DLA on logit(Yes) - logit(No)",
                      title=title or f"Top {len(heads)} heads by |DLA {by}|: where their push comes from (n={result.n})")
    return fig


def path_heatmap(result: PathPatchingResult, via: str = "q", title: str | None = None) -> go.Figure:
    """Senders (rows) x receivers (columns) of the normalised path effect through ``via`` (q, k or v)."""
    m = result.matrix(via)
    lim = _limit(m.to_numpy())
    fig = go.Figure(go.Heatmap(z=m.to_numpy(), x=list(m.columns), y=list(m.index), colorscale="RdBu_r", zmid=0,
                               zmin=-lim, zmax=lim, colorbar={"title": {"text": "normalised"}},
                               hovertemplate="sender %{y}<br>receiver %{x}<br>effect %{z:+.3f}<extra></extra>"))
    fig.update_layout(title=title or f"Path patching via {via} ({result.kind} pairs, n={result.n}; 1 = whole gap restored)",
                      xaxis={"type": "category", "title": "receiver"}, yaxis={"type": "category", "title": "sender", "autorange": "reversed"},
                      width=max(480, 28 * len(m.columns) + 260), height=max(360, 28 * len(m.index) + 200))
    return fig
