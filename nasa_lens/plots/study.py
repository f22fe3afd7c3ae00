"""Study figures: models side by side, before/after bars, condition agreement, the training curve.

(The ablation curve figure is :func:`nasa_lens.plots.causal.ablation_curve_figure`.)

Every function returns a plotly ``Figure`` (never shows it) built from the long-format frames the study
writes (``bias_metrics.csv``, ``conditions.csv``, ``finetune_history.csv``), so a figure can be remade from the CSVs alone.
Colours: one colour per model (or per phase: before grey, after green); NAS heatmaps use the red/blue
diverging scale of :mod:`nasa_lens.plots` (red = attends to "No").
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from nasa_lens.vocab import NAS_COLORSCALE, SUMMARY_METRICS

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.nas import NASResult

__all__ = [
    "SUMMARY_METRICS",
    "metrics_by_model",
    "before_after_bars",
    "nas_heatmaps_by_model",
    "training_curve",
    "condition_agreement",
]

_PALETTE = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02")
_PHASE_COLORS = {"before": "#969696", "after": "#1b9e77"}


def _need(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} needs columns {list(columns)}; missing {missing}")


def _error(values: pd.Series, low: pd.Series, high: pd.Series) -> dict:
    v, lo, hi = (np.asarray(x, dtype=float) for x in (values, low, high))
    return {"type": "data", "symmetric": False, "array": np.nan_to_num(hi - v), "arrayminus": np.nan_to_num(v - lo), "visible": True}


def metrics_by_model(frame: pd.DataFrame, *, phase: str = "before", metrics: Sequence[str] = SUMMARY_METRICS,
                     title: str | None = None) -> go.Figure:
    """Bias metrics of every model side by side, one panel per dataset, with 95% bootstrap intervals.

    ``frame``: long bias metrics (``model, dataset, phase, metric, value, ci_low, ci_high``).
    """
    _need(frame, ["model", "dataset", "phase", "metric", "value", "ci_low", "ci_high"], "metrics_by_model")
    sub = frame[(frame["phase"] == phase) & frame["metric"].isin(metrics)]
    if sub.empty:
        raise ValueError(f"no {phase!r} rows for metrics {list(metrics)}")
    datasets = list(dict.fromkeys(sub["dataset"]))
    models = list(dict.fromkeys(sub["model"]))
    fig = make_subplots(rows=1, cols=len(datasets), subplot_titles=datasets, shared_yaxes=True, horizontal_spacing=0.04)
    for j, ds in enumerate(datasets):
        for i, model in enumerate(models):
            rows = sub[(sub["dataset"] == ds) & (sub["model"] == model)].set_index("metric").reindex(list(metrics))
            fig.add_trace(
                go.Bar(
                    x=list(metrics), y=rows["value"], name=model, legendgroup=model, showlegend=j == 0,
                    marker_color=_PALETTE[i % len(_PALETTE)], error_y=_error(rows["value"], rows["ci_low"], rows["ci_high"]),
                    hovertemplate=f"{model}<br>%{{x}} %{{y:.3f}}<extra>{ds}</extra>",
                ),
                row=1, col=j + 1,
            )
    fig.add_hline(y=0, line_color="black", line_width=1)
    fig.update_layout(
        title=title or f"Bias metrics by model ({phase} the fine-tune; bars: 95% bootstrap intervals)",
        barmode="group", width=max(600, 380 * len(datasets)), height=440, legend_title_text="model",
    )
    fig.update_yaxes(title_text="value", col=1)
    return fig


def before_after_bars(frame: pd.DataFrame, model: str, *, metrics: Sequence[str] = SUMMARY_METRICS,
                      title: str | None = None) -> go.Figure:
    """One model's metrics before and after the NASA fine-tune, one panel per dataset, with intervals."""
    _need(frame, ["model", "dataset", "phase", "metric", "value", "ci_low", "ci_high"], "before_after_bars")
    sub = frame[(frame["model"] == model) & frame["metric"].isin(metrics)]
    if sub.empty:
        raise ValueError(f"no rows for model {model!r}")
    datasets = list(dict.fromkeys(sub["dataset"]))
    fig = make_subplots(rows=1, cols=len(datasets), subplot_titles=datasets, shared_yaxes=True, horizontal_spacing=0.04)
    for j, ds in enumerate(datasets):
        for phase in ("before", "after"):
            rows = sub[(sub["dataset"] == ds) & (sub["phase"] == phase)].set_index("metric").reindex(list(metrics))
            if rows["value"].isna().all():
                continue
            fig.add_trace(
                go.Bar(
                    x=list(metrics), y=rows["value"], name=phase, legendgroup=phase, showlegend=j == 0,
                    marker_color=_PHASE_COLORS[phase], error_y=_error(rows["value"], rows["ci_low"], rows["ci_high"]),
                    hovertemplate=f"{phase}<br>%{{x}} %{{y:.3f}}<extra>{ds}</extra>",
                ),
                row=1, col=j + 1,
            )
    fig.add_hline(y=0, line_color="black", line_width=1)
    fig.update_layout(
        title=title or f"{model}: before vs after the NASA fine-tune (bars: 95% bootstrap intervals)",
        barmode="group", width=max(600, 380 * len(datasets)), height=440,
    )
    fig.update_yaxes(title_text="value", col=1)
    return fig


def nas_heatmaps_by_model(results: dict[str, NASResult], title: str | None = None) -> go.Figure:
    """Mean-NAS heatmaps of several models side by side (each its own layer/head axes) on one shared
    diverging colour scale centred at 0 (red = attends to "No")."""
    if not results:
        raise ValueError("nas_heatmaps_by_model needs at least one result")
    names = list(results)
    finite = [np.abs(r.mean[np.isfinite(r.mean)]) for r in results.values()]
    limit = max((float(f.max()) for f in finite if f.size), default=1.0) or 1.0
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=[f"{n} ({r.n_layers}x{r.n_heads})" for n, r in results.items()],
                        horizontal_spacing=0.08)
    for i, (name, r) in enumerate(results.items()):
        se = r.stderr
        text = [[f"{name}<br>head {layer}.{h}<br>NAS {r.mean[layer, h]:.4f} +- {se[layer, h]:.4f}" for h in range(r.n_heads)]
                for layer in range(r.n_layers)]
        fig.add_trace(
            go.Heatmap(z=r.mean, x=list(range(r.n_heads)), y=list(range(r.n_layers)), coloraxis="coloraxis",
                       text=text, hovertemplate="%{text}<extra></extra>"),
            row=1, col=i + 1,
        )
        fig.update_yaxes(autorange="reversed", title_text="layer" if i == 0 else None, dtick=1 if r.n_layers <= 40 else None,
                         row=1, col=i + 1)
        fig.update_xaxes(title_text="head", dtick=1, row=1, col=i + 1)
    first = next(iter(results.values()))
    fig.update_layout(
        title=title or f"Mean NAS by model ({first.format}, positions={first.positions}; shared colour scale)",
        coloraxis={"colorscale": NAS_COLORSCALE, "cmin": -limit, "cmax": limit, "colorbar": {"title": {"text": "mean NAS"}}},
        width=max(500, sum(40 * r.n_heads + 140 for r in results.values()) + 120),
        height=max(420, 20 * max(r.n_layers for r in results.values()) + 200),
    )
    return fig


def training_curve(history: pd.DataFrame, columns: Sequence[str] | None = None, title: str | None = None) -> go.Figure:
    """Columns of a wide training history (``step`` on x; default: every numeric column) as lines, one
    panel per column (validation columns have points only at the validated steps)."""
    _need(history, ["step", *(columns or [])], "training_curve")
    cols = [c for c in (columns or history.columns) if c != "step" and pd.api.types.is_numeric_dtype(history[c])
            and history[c].notna().any()]
    if not cols:
        raise ValueError("the training history has no numeric column besides step")
    fig = make_subplots(rows=len(cols), cols=1, shared_xaxes=True, subplot_titles=cols, vertical_spacing=0.08)
    for i, c in enumerate(cols):
        sub = history[["step", c]].dropna()
        fig.add_trace(go.Scatter(x=sub["step"], y=sub[c], mode="lines+markers", name=c, showlegend=False), row=i + 1, col=1)
    fig.update_xaxes(title_text="step", row=len(cols), col=1)
    fig.update_layout(title=title or "NASA fine-tune", height=220 * len(cols) + 120, width=700)
    return fig


def condition_agreement(corr: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Spearman rank correlation of the per-head NAS between every pair of conditions (a symmetric matrix;
    the diagonal is 1), annotated with the top-k overlap."""
    _need(corr, ["a", "b", "spearman_r", "top_k_overlap"], "condition_agreement")
    names = list(dict.fromkeys([*corr["a"], *corr["b"]]))
    idx = {n: i for i, n in enumerate(names)}
    z = np.eye(len(names))
    text = [["" for _ in names] for _ in names]
    for r in corr.itertuples():
        i, j = idx[r.a], idx[r.b]
        z[i, j] = z[j, i] = r.spearman_r
        text[i][j] = text[j][i] = f"r={r.spearman_r:.2f}<br>top-{int(getattr(r, 'k', 0))} overlap {r.top_k_overlap:.2f}"
    fig = go.Figure(go.Heatmap(z=z, x=names, y=names, zmin=-1, zmax=1, colorscale=NAS_COLORSCALE, text=text,
                               texttemplate="%{text}", hovertemplate="%{y} vs %{x}<br>%{text}<extra></extra>",
                               colorbar={"title": {"text": "Spearman r"}}))
    fig.update_layout(title=title or "Agreement of the NAS head ranking across conditions",
                      width=max(500, 160 * len(names) + 200), height=max(420, 110 * len(names) + 160))
    fig.update_yaxes(autorange="reversed")
    return fig
