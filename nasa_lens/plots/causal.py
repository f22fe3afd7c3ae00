"""Figures for the causal studies (:mod:`nasa_lens.causal`). Each function returns a plotly ``Figure`` (never
shows it) and only reshapes what a result already holds; write one with :func:`nasa_lens.plots.save_figure`.

Colours follow :mod:`nasa_lens.plots.nas`: one diverging scale centred at 0 for per-head maps (red = positive).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from nasa_lens.vocab import NAS_COLORSCALE

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.causal import AblationCurveResult, EffectSweepResult, PatchingResult

__all__ = [
    "ablation_curve_figure",
    "effect_heatmap",
    "nas_effect_scatter",
    "patching_heatmap",
    "sweep_scatter",
]

_COLORS = {"top": "#b2182b", "bottom": "#2166ac", "random_mean": "#636363", "random": "#969696"}
_NAMES = {"top": "top-k NAS heads", "bottom": "bottom-k NAS heads", "random_mean": "random k heads (seed mean)"}


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha})"


def ablation_curve_figure(
    result: AblationCurveResult, metrics: Sequence[str] = ("yes_rate", "mean_logit_diff"), *, delta: bool = True, title: str | None = None
) -> go.Figure:
    """One panel per metric: the change (``delta=True``) or value of the metric against k, for the top-k,
    bottom-k and random heads (seed mean), each with its 95% bootstrap band; random seeds as dots."""
    table = result.to_dataframe()
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=list(metrics), horizontal_spacing=0.12)
    col_v, lo, hi = ("delta", "delta_ci_low", "delta_ci_high") if delta else ("value", "ci_low", "ci_high")
    for c, metric in enumerate(metrics, start=1):
        t = table[(table["metric"] == metric) & (table["k"] > 0)]
        for cond in ("top", "random_mean", "bottom"):
            s = t[t["condition"] == cond].sort_values("k")
            if s.empty:
                continue
            ks = s["k"].tolist()
            color = _COLORS[cond]
            fig.add_trace(go.Scatter(x=ks + ks[::-1], y=list(s[hi]) + list(s[lo])[::-1], mode="lines", fill="toself", fillcolor=_rgba(color, 0.15),
                                     line={"width": 0}, hoverinfo="skip", showlegend=False, legendgroup=cond), row=1, col=c)
            fig.add_trace(go.Scatter(x=ks, y=s[col_v], mode="lines+markers", name=_NAMES[cond], line={"color": color},
                                     legendgroup=cond, showlegend=c == 1,
                                     customdata=np.stack([s[lo], s[hi], s["p_value"]], -1),
                                     hovertemplate="k=%{x}<br>%{y:.3f} [%{customdata[0]:.3f}, %{customdata[1]:.3f}]"
                                                   "<br>p vs random %{customdata[2]:.3g}<extra></extra>"), row=1, col=c)
        r = t[t["condition"] == "random"]
        if not r.empty:
            fig.add_trace(go.Scatter(x=r["k"], y=r[col_v], mode="markers", name="random draws", legendgroup="random",
                                     marker={"color": _COLORS["random"], "size": 5, "opacity": 0.6}, showlegend=c == 1), row=1, col=c)
        if delta:
            fig.add_hline(y=0, line_dash="dot", line_color="black", row=1, col=c)
        fig.update_xaxes(type="log", title_text="k (heads ablated)", tickvals=sorted(t["k"].unique()), row=1, col=c)
        fig.update_yaxes(title_text=f"change in {metric}" if delta else metric, row=1, col=c)
    mode = result.config.get("mode", "")
    fig.update_layout(title=title or f"Ablating k heads ({mode}): top NAS vs controls, n={len(result.ids)}, 95% bootstrap bands",
                      width=max(520, 430 * len(metrics)), height=440)
    return fig


def _head_heatmap(values: np.ndarray, hover: list[list[str]], colorbar: str, title: str) -> go.Figure:
    finite = np.abs(values[np.isfinite(values)])
    limit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    L, H = values.shape
    fig = go.Figure(go.Heatmap(z=values, x=list(range(H)), y=list(range(L)), colorscale=NAS_COLORSCALE, zmid=0, zmin=-limit,
                               zmax=limit, text=hover, hovertemplate="%{text}<extra></extra>", colorbar={"title": {"text": colorbar}}))
    fig.update_layout(title={"text": title, "font": {"size": 14}}, xaxis_title="head", yaxis_title="layer",
                      width=max(420, 60 * H + 200), height=max(420, 22 * L + 160))
    fig.update_yaxes(autorange="reversed", dtick=1 if L <= 40 else None)
    fig.update_xaxes(dtick=1)
    return fig


def effect_heatmap(sweep: EffectSweepResult, title: str | None = None) -> go.Figure:
    """Per-head ablation effect on logit(Yes) - logit(No) (red = ablating the head raises it, i.e. the head
    pushes towards "No")."""
    eff, se = sweep.effects, sweep.stderr
    hover = [[f"head {layer}.{h}<br>effect {eff[layer, h]:+.4f}<br>stderr {se[layer, h]:.4f}<br>n {sweep.n}"
              for h in range(eff.shape[1])] for layer in range(eff.shape[0])]
    return _head_heatmap(eff, hover, "effect on<br>logit diff",
                         title or f"Effect of ablating each head ({sweep.method}, {sweep.mode}), n={sweep.n}")


def patching_heatmap(result: PatchingResult, title: str | None = None) -> go.Figure:
    """Normalised patching effect per head: (patched - corrupted) / (clean - corrupted) of the mean logit diff."""
    frame = result.to_dataframe()
    L, H = result.patched.shape[1:]
    norm = result.normalized()
    hover = [["" for _ in range(H)] for _ in range(L)]
    for r in frame.itertuples():
        hover[r.layer][r.head] = (f"head {r.head_name}<br>normalised {r.normalized:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]"
                                  f"<br>effect {r.effect:+.4f} +- {r.effect_stderr:.4f}<br>p {r.p_value:.3g}")
    return _head_heatmap(norm, hover, "normalised<br>effect",
                         title or f"Patching {result.what} ({result.kind} pairs, n={result.n}); clean-corrupted gap {result.gap:+.3f}")


def nas_effect_scatter(frame: pd.DataFrame, stats: dict | None = None, title: str | None = None) -> go.Figure:
    """NAS (x) against the causal effect (y), one dot per head (``frame`` from
    :func:`nasa_lens.causal.nas_effect_table`), with the rank correlation in the title."""
    note = f" (Spearman {stats['spearman']:+.2f}, p={stats['spearman_p']:.2g}, n={stats['n']})" if stats else ""
    fig = go.Figure(go.Scatter(
        x=frame["nas"], y=frame["effect"], mode="markers", text=frame["head_name"],
        error_y={"type": "data", "array": 1.96 * frame["stderr"], "thickness": 0.8, "width": 0},
        marker={"size": 7, "color": frame["layer"], "colorscale": "Viridis", "colorbar": {"title": {"text": "layer"}}},
        hovertemplate="head %{text}<br>NAS %{x:.3f}<br>effect %{y:+.4f}<extra></extra>",
    ))
    fig.add_hline(y=0, line_dash="dot", line_color="black")
    fig.update_layout(title=title or f"NAS vs causal effect of ablating the head{note}", xaxis_title="mean NAS",
                      yaxis_title="effect on logit(Yes) - logit(No)", width=640, height=480)
    return fig


def sweep_scatter(exact: EffectSweepResult, approx: EffectSweepResult, stats: dict | None = None, title: str | None = None) -> go.Figure:
    """Exact per-head effects (x) against attribution-patching estimates (y), with the y = x line."""
    x, y = exact.effects.ravel(), approx.effects.ravel()
    L, H = exact.effects.shape
    names = [f"{layer}.{h}" for layer in range(L) for h in range(H)]
    lim = [float(np.nanmin([x.min(), y.min()])), float(np.nanmax([x.max(), y.max()]))]
    note = f" (Spearman {stats['spearman']:+.2f}, n={stats['n']})" if stats else ""
    fig = go.Figure([
        go.Scatter(x=lim, y=lim, mode="lines", line={"dash": "dot", "color": "gray"}, name="y = x"),
        go.Scatter(x=x, y=y, mode="markers", text=names, name="heads",
                   hovertemplate="head %{text}<br>exact %{x:+.4f}<br>attribution %{y:+.4f}<extra></extra>"),
    ])
    fig.update_layout(title=title or f"Exact ablation vs attribution patching{note}", xaxis_title=f"exact ({exact.mode})",
                      yaxis_title=f"attribution ({approx.mode})", width=600, height=480)
    return fig
