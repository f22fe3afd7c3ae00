"""Figures of a de-biasing comparison (:class:`nasa_lens.debias.ComparisonResult`). Functions return a plotly
``Figure`` (never shown); write one with :func:`nasa_lens.plots.save_figure`."""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = ["comparison_figure", "FIX_COLORS"]

FIX_COLORS = {
    "base": "#7f7f7f", "threshold": "#bcbd22", "knockout": "#ff7f0e", "mask": "#2ca02c", "steer": "#9467bd",
    "nasa": "#d62728", "random": "#1f77b4", "random-knockout": "#aec7e8", "random-mask": "#98df8a", "random-steer": "#c5b0d5",
}


def comparison_figure(frame: pd.DataFrame, metrics: Sequence[str] = ("pr_gap", "accuracy", "yes_rate"), title: str | None = None) -> go.Figure:
    """One panel per metric: x = test set, one bar per method with its 95% bootstrap interval."""
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=list(metrics), horizontal_spacing=0.06)
    methods = list(dict.fromkeys(frame["method"]))
    for col, metric in enumerate(metrics, start=1):
        for method in methods:
            part = frame[frame["method"] == method]
            fig.add_trace(
                go.Bar(
                    x=part["dataset"], y=part[metric], name=method, legendgroup=method, showlegend=col == 1,
                    marker_color=FIX_COLORS.get(method),
                    error_y={"type": "data", "symmetric": False, "array": part[f"{metric}_hi"] - part[metric],
                             "arrayminus": part[metric] - part[f"{metric}_lo"], "thickness": 1},
                ),
                row=1, col=col,
            )
    fig.update_layout(barmode="group", title=title or "De-biasing fixes side by side", height=420, width=420 * len(metrics) + 150,
                      legend={"title": {"text": "method"}})
    return fig
