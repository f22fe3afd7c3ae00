"""Figures for NASA results. Every function returns a plotly ``Figure`` (never shows it) and only reshapes what a
result object holds; write one with :func:`nasa_lens.plots.save_figure`.

Colour convention for NAS (as :mod:`nasa_lens.plots`): diverging, centred at 0, red = attends to "No" more.
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
    from nasa_lens.debias import ComparisonResult
    from nasa_lens.finetune import TrainResult

__all__ = ["training_curves", "method_comparison", "nas_change_heatmap", "METHOD_COLORS"]


METHOD_COLORS = {"base": "#7f7f7f", "threshold": "#bcbd22", "nasa": "#d62728", "random": "#1f77b4", "all": "#9467bd"}


def training_curves(result: TrainResult, title: str | None = None) -> go.Figure:
    """Left: training loss (and the NAS term, if any) per step. Right: validation loss and pr_gap per evaluation."""
    df = result.to_dataframe()
    fig = make_subplots(rows=1, cols=2, subplot_titles=("training batches", "validation split"),
                        specs=[[{}, {"secondary_y": True}]])
    train = df[df.split == "train"]
    for metric, dash in (("loss", "solid"), ("ce", "dot"), ("nas_loss", "dash")):
        part = train[train.metric == metric]
        if len(part) and not (metric == "ce" and "nas_loss" not in set(train.metric)):
            fig.add_trace(go.Scatter(x=part.step, y=part.value, name=f"train {metric}", mode="lines", line={"dash": dash}), row=1, col=1)
    val = df[df.split == "val"]
    for metric, secondary in (("loss", False), ("pr_gap", True), ("accuracy", True)):
        part = val[val.metric == metric]
        if len(part):
            fig.add_trace(go.Scatter(x=part.step, y=part.value, name=f"val {metric}", mode="lines+markers"), row=1, col=2, secondary_y=secondary)
    if result.best_step and len(val):
        fig.add_vline(x=result.best_step, line={"dash": "dot", "color": "grey"}, row=1, col=2)
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="loss", row=1, col=1)
    fig.update_yaxes(title_text="val loss", row=1, col=2, secondary_y=False)
    fig.update_yaxes(title_text="pr_gap / accuracy", row=1, col=2, secondary_y=True)
    heads = ", ".join(format_head(h) for h in result.heads[:12]) + (" ..." if len(result.heads) > 12 else "")
    fig.update_layout(title=title or f"NASA training on {result.model}: heads {heads}", height=420, width=1050)
    return fig


def method_comparison(
    comparison: ComparisonResult,
    metrics: Sequence[str] = ("pr_gap", "recall", "accuracy", "auroc"),
    datasets: Sequence[str] | None = None,
    title: str | None = None,
) -> go.Figure:
    """One panel per metric: grouped bars (dataset on x, one bar per method) with 95% interval error bars."""
    df = comparison.to_dataframe()
    datasets = list(datasets) if datasets is not None else [d for d in dict.fromkeys(df.dataset) if d in set(df[df.metric.isin(metrics)].dataset)]
    methods = [m for m in comparison.meta.get("methods", list(dict.fromkeys(df.method))) if m in set(df.method)]
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=list(metrics), horizontal_spacing=0.06)
    for j, metric in enumerate(metrics, start=1):
        for method in methods:
            part = df[(df.metric == metric) & (df.method == method)].set_index("dataset").reindex(datasets)
            fig.add_trace(
                go.Bar(
                    x=datasets, y=part.value, name=method, legendgroup=method, showlegend=(j == 1),
                    marker_color=METHOD_COLORS.get(method),
                    error_y={"type": "data", "symmetric": False, "array": (part.ci_high - part.value).to_numpy(),
                             "arrayminus": (part.value - part.ci_low).to_numpy()},
                ),
                row=1, col=j,
            )
    fig.update_layout(barmode="group", title=title or f"Before/after and baselines ({comparison.meta.get('model', '')})",
                      height=430, width=360 * len(metrics))
    return fig


def nas_change_heatmap(before: NASResult, after: NASResult, heads: Sequence[Head] = (), title: str | None = None) -> go.Figure:
    """Mean NAS ``[layer, head]`` before, after and after - before, on one colour scale; trained heads boxed."""
    b, a = before.mean, after.mean
    if b.shape != a.shape:
        raise ValueError(f"before {b.shape} and after {a.shape} scans differ in shape")
    panels = (("before", b), ("after", a), ("after - before", a - b))
    lim = float(np.nanmax(np.abs(np.concatenate([p.ravel() for _, p in panels])))) or 1.0
    fig = make_subplots(rows=1, cols=3, subplot_titles=[p for p, _ in panels], horizontal_spacing=0.05)
    for j, (name, z) in enumerate(panels, start=1):
        fig.add_trace(
            go.Heatmap(z=z, x=list(range(z.shape[1])), y=list(range(z.shape[0])), zmin=-lim, zmax=lim, colorscale=NAS_COLORSCALE,
                       showscale=(j == 3), colorbar={"title": "NAS"},
                       hovertemplate=f"{name}<br>layer %{{y}} head %{{x}}<br>NAS %{{z:.3f}}<extra></extra>"),
            row=1, col=j,
        )
        for layer, h in heads:
            fig.add_shape(type="rect", x0=h - 0.5, x1=h + 0.5, y0=layer - 0.5, y1=layer + 0.5,
                          line={"color": "black", "width": 2}, row=1, col=j)
    fig.update_xaxes(title_text="head")
    fig.update_yaxes(title_text="layer", row=1, col=1)
    fig.update_layout(title=title or f"NAS before/after NASA ({before.model}, {before.dataset}, n={before.n}); trained heads boxed",
                      height=520, width=1200)
    return fig
