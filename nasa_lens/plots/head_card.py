"""The head card: one head's story in one figure, and the NAS heatmap whose hover carries each head's numbers.

* :func:`head_card`: a head's NAS by gold label and by the model's answer, its attention to each candidate
  across query positions, its single-head ablation effect (given an
  :class:`~nasa_lens.causal.EffectSweepResult`) and its direct-logit-attribution split (given a DLA result);
* :func:`head_numbers`: the same key numbers as a dictionary;
* :func:`nas_heatmap_detailed`: the mean-NAS heatmap whose hover text carries every head's key numbers: what
  the linked widget (:mod:`nasa_lens.plots.widgets`) clicks on and what a plain HTML export shows.

:func:`candidate_attention` runs the model (one forward per batch, hooking the head's layer only), like the
attention viewer; everything else reshapes results.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from nasa_lens.heads import Head, format_head
from nasa_lens.plots.attention import NO_COLOR, OTHER_COLOR, YES_COLOR, ExampleError, resolve_heads
from nasa_lens.prompts import PromptFormat, iter_batches
from nasa_lens.vocab import NasaLensError

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.causal import EffectSweepResult
    from nasa_lens.models import LoadedModel
    from nasa_lens.nas import NASResult

__all__ = ["CandidateAttention", "candidate_attention", "dla_means", "head_card", "head_numbers", "nas_heatmap_detailed"]

# ------------------------------------------------------------------------------------------ one head, many prompts


@dataclass
class CandidateAttention:
    """One head's attention to the two candidates at the query positions after them, over examples.

    ``to_yes[e, j]`` / ``to_no[e, j]``: example ``e``'s attention from query offset ``offsets[j]`` (relative to
    the answer position, 0 = answer) to its "yes" / "no" candidate; NaN where the query is not after the
    later candidate (rows before it are outside the NAS window).
    """

    head: Head
    offsets: np.ndarray
    to_yes: np.ndarray
    to_no: np.ndarray
    ids: list[str]

    def to_dataframe(self) -> pd.DataFrame:
        e, j = np.meshgrid(np.arange(len(self.ids)), np.arange(len(self.offsets)), indexing="ij")
        frame = pd.DataFrame({"id": np.asarray(self.ids, dtype=object)[e.ravel()], "offset": self.offsets[j.ravel()],
                              "to_yes": self.to_yes.ravel(), "to_no": self.to_no.ravel()})
        return frame.dropna(subset=["to_yes"]).reset_index(drop=True)


@torch.no_grad()
def candidate_attention(model: LoadedModel, data: Sequence[Any], head: Head, fmt: PromptFormat | str | None = None,
                        *, batch_size: int = 16, max_offset: int = 48) -> CandidateAttention:
    """One forward per batch, hooking only ``head``'s layer: its attention to both candidates from every
    query after the later candidate (at most ``max_offset`` positions before the answer)."""
    fmt = PromptFormat.of(fmt)
    (layer, h), = resolve_heads(model, [head])
    name = f"blocks.{layer}.attn.hook_pattern"
    examples = list(data)
    width = max_offset + 1
    to_yes = np.full((len(examples), width), np.nan)
    to_no = np.full((len(examples), width), np.nan)
    for idx, batch in iter_batches(model, examples, fmt, batch_size):
        _, cache = model.bridge.run_with_cache(batch.input_ids, names_filter=lambda n: n == name, **batch.forward_kwargs())
        pat = cache[name][:, h].float()  # [example, q, k]
        rows = torch.arange(len(idx), device=pat.device)
        a_yes = pat[rows, :, batch.pos_yes].cpu().numpy()  # [example, q]
        a_no = pat[rows, :, batch.pos_no].cpu().numpy()
        last = batch.pos_candidate_last.cpu().numpy()
        end = int(batch.pos_answer[0])
        for r, i in enumerate(idx):
            for j in range(width):
                q = end - (width - 1 - j)
                if q > last[r]:
                    to_yes[i, j], to_no[i, j] = a_yes[r, q], a_no[r, q]
    ids = [str(getattr(ex, "id", i)) for i, ex in enumerate(examples)]
    keep = ~np.all(np.isnan(to_yes), axis=0)
    offsets = np.arange(-(width - 1), 1)
    return CandidateAttention((layer, h), offsets[keep], to_yes[:, keep], to_no[:, keep], ids)


_VIAS = ("via_yes", "via_no", "via_other")


def dla_means(dla: Any) -> dict[str, np.ndarray] | None:
    """Mean ``via_yes`` / ``via_no`` / ``via_other`` per head (``[layer, head]`` arrays) from any DLA-like object:
    a :class:`nasa_lens.dla.DLAResult` (its ``source(name)``: ``[example, layer, head]``); arrays ``via_yes`` /
    ``via_no`` / ``via_other`` shaped ``[layer, head]`` or ``[example, layer, head]``; or a table (``table()`` /
    ``per_head`` / ``head_table()`` / ``to_dataframe()``, or a DataFrame) with ``layer, head`` and those columns
    (rows of a head are averaged). None for None."""
    if dla is None or isinstance(dla, dict):
        return dla
    if all(hasattr(dla, k) and not callable(getattr(dla, k)) for k in _VIAS):
        arrays = {k: np.asarray(getattr(dla, k), dtype=float) for k in _VIAS}
    elif callable(getattr(dla, "source", None)):
        arrays = {k: np.asarray(dla.source(k), dtype=float) for k in _VIAS}
    else:
        table = dla if isinstance(dla, pd.DataFrame) else None
        for attr in ("table", "per_head", "head_table", "to_dataframe"):
            obj = getattr(dla, attr, None)
            if table is not None or obj is None:
                continue
            cand = obj() if callable(obj) else obj
            if isinstance(cand, pd.DataFrame) and {"layer", "head", *_VIAS} <= set(cand.columns):
                table = cand
        if table is None or not {"layer", "head", *_VIAS} <= set(table.columns):
            raise TypeError("dla must have via_yes / via_no / via_other arrays, a source(name) method, or a per-head table "
                            "with layer, head and those columns")
        g = table.groupby(["layer", "head"])[list(_VIAS)].mean()
        n_l, n_h = int(table["layer"].max()) + 1, int(table["head"].max()) + 1
        arrays = {k: np.full((n_l, n_h), np.nan) for k in _VIAS}
        for (layer, h), row in g.iterrows():
            for k in _VIAS:
                arrays[k][int(layer), int(h)] = row[k]
    return {k: (np.nanmean(v, axis=0) if v.ndim == 3 else v) for k, v in arrays.items()}


def _dla_split(dla: Any, head: Head) -> dict[str, float] | None:
    """One head's ``{via_yes, via_no, via_other}`` (see :func:`dla_means`; ``dla`` may be its output)."""
    means = dla if isinstance(dla, dict) else dla_means(dla)
    if means is None:
        return None
    layer, h = head
    if layer >= means["via_yes"].shape[0] or h >= means["via_yes"].shape[1] or np.isnan(means["via_yes"][layer, h]):
        return None
    return {k: float(means[k][layer, h]) for k in _VIAS}


def head_numbers(nas: NASResult, head: Head, sweep: EffectSweepResult | None = None, dla: Any = None) -> dict[str, Any]:
    """A head's key numbers: mean NAS, stderr, rank (1 = most "No"-leaning), mean NAS on gold-yes / gold-no
    examples and on the model's yes / no answers, and (when given) the ablation effect and the DLA split."""
    layer, h = head
    mean, se = nas.mean, nas.stderr
    order = np.argsort(-np.nan_to_num(mean.ravel(), nan=-np.inf), kind="stable")
    rank = int(np.flatnonzero(order == layer * nas.n_heads + h)[0]) + 1
    col = nas.scores[:, layer, h]

    def group(values: np.ndarray | None, v: int) -> float:
        if values is None or not (values == v).any():
            return float("nan")
        return float(col[values == v].mean())

    out: dict[str, Any] = {"head": format_head(head), "nas_mean": float(mean[head]), "nas_stderr": float(se[head]),
                           "rank": rank, "n_heads": nas.n_layers * nas.n_heads, "n": nas.n,
                           "nas_gold_yes": group(nas.labels, 1), "nas_gold_no": group(nas.labels, 0),
                           "nas_pred_yes": group(nas.preds, 1), "nas_pred_no": group(nas.preds, 0)}
    if sweep is not None:
        eff = sweep.effects
        out["effect"] = float(eff[head])
        out["effect_stderr"] = float(sweep.stderr[head])
        e_order = np.argsort(-eff.ravel(), kind="stable")
        out["effect_rank"] = int(np.flatnonzero(e_order == layer * eff.shape[1] + h)[0]) + 1
    split = _dla_split(dla, head)
    if split is not None:
        out.update(split)
    return out


def head_card(
    model: LoadedModel,
    data: Sequence[Any],
    head: Head | str,
    sweep: EffectSweepResult | None = None,
    dla: Any = None,
    *,
    nas: NASResult | None = None,
    fmt: PromptFormat | str | None = None,
    batch_size: int = 16,
    title: str | None = None,
) -> go.Figure:
    """One figure telling a head's story.

    Panels: (1) its per-example NAS by gold label and (2) by the model's answer, as box plots with every
    example; (3) its mean attention to the "yes" and the "no" candidate at each query position after the
    later candidate (0 = the answer position), +-1 standard error over examples; (4) when ``sweep`` is given,
    its single-head ablation effect per example (change of logit(Yes) - logit(No) when the head is removed)
    with its rank among all heads; (5) when ``dla`` is given, its direct logit attribution split into what it
    moves via the "yes" candidate, via the "no" candidate and via other tokens. A panel whose input is
    missing is left out.

    ``nas``: a :class:`~nasa_lens.nas.NASResult` on ``data`` (computed with :func:`~nasa_lens.nas.scan_nas`
    when None). Raises :class:`~nasa_lens.heads.HeadSpecError` for a head the model does not have.
    """
    from nasa_lens.nas import scan_nas

    fmt = PromptFormat.of(fmt)
    (head,) = resolve_heads(model, [head] if not isinstance(head, str) else head)
    examples = list(data)
    if not examples:
        raise ExampleError("head_card needs at least one example")
    if nas is None:
        nas = scan_nas(model, examples, fmt, batch_size=batch_size, progress=False)
    elif nas.n_layers != model.n_layers or nas.n_heads != model.n_heads:
        raise NasaLensError(f"the NAS result is {nas.n_layers} x {nas.n_heads} heads but the model has {model.n_layers} x {model.n_heads}")
    cand = candidate_attention(model, examples, head, fmt, batch_size=batch_size)
    nums = head_numbers(nas, head, sweep, dla)
    split = _dla_split(dla, head)
    panels = ["by label", "by answer", "candidates"]
    titles = {"by label": "NAS by gold label", "by answer": "NAS by the model's answer",
              "candidates": "attention to the candidates after them"}
    if sweep is not None:
        panels.append("effect")
        titles["effect"] = f"ablation effect (rank {nums['effect_rank']} of {nums['n_heads']})"
    if split is not None:
        panels.append("dla")
        titles["dla"] = "direct logit attribution, by source"
    cols = 2
    nrows = math.ceil(len(panels) / cols)
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=[titles[p] for p in panels], vertical_spacing=0.16,
                        horizontal_spacing=0.12)
    layer, h = head
    col = nas.scores[:, layer, h]
    ids = np.asarray(nas.ids, dtype=object)
    for i, panel in enumerate(panels):
        r, c = i // cols + 1, i % cols + 1
        if panel in ("by label", "by answer"):
            key = nas.labels if panel == "by label" else nas.preds
            what = "gold" if panel == "by label" else "answer"
            if key is None:
                continue
            for v, name, color in ((1, "yes", YES_COLOR), (0, "no", NO_COLOR)):
                rows = key == v
                fig.add_trace(go.Box(y=col[rows], x=[f"{what} {name}"] * int(rows.sum()), name=f"{what} {name} (n={int(rows.sum())})",
                                     marker_color=color, boxpoints="all", jitter=0.4, pointpos=0, boxmean=True,
                                     customdata=ids[rows], hovertemplate="%{customdata}<br>NAS %{y:.4f}<extra></extra>",
                                     showlegend=False), row=r, col=c)
            fig.update_yaxes(title_text="NAS", row=r, col=c)
        elif panel == "candidates":
            for arr, name, color in ((cand.to_yes, "to the yes candidate", YES_COLOR), (cand.to_no, "to the no candidate", NO_COLOR)):
                with np.errstate(all="ignore"):
                    m = np.nanmean(arr, axis=0)
                    cnt = np.sum(~np.isnan(arr), axis=0)
                    s = np.where(cnt > 1, np.nanstd(arr, axis=0, ddof=1) / np.sqrt(np.maximum(cnt, 1)), 0.0)
                fig.add_trace(go.Scatter(x=cand.offsets, y=m, mode="lines+markers", name=f"attention {name}",
                                         line={"color": color}, error_y={"type": "data", "array": np.nan_to_num(s), "visible": True},
                                         customdata=cnt, hovertemplate="offset %{x}<br>mean %{y:.4f}<br>n=%{customdata}<extra>"
                                         + name + "</extra>"), row=r, col=c)
            fig.update_xaxes(title_text="query position (0 = answer)", row=r, col=c)
            fig.update_yaxes(title_text="attention", rangemode="tozero", row=r, col=c)
        elif panel == "effect":
            per = sweep.per_example[:, layer, h]
            sweep_ids = np.asarray(sweep.ids or [str(j) for j in range(len(per))], dtype=object)
            fig.add_trace(go.Box(y=per, x=[format_head(head)] * len(per), name="this head", marker_color="#7570b3",
                                 boxpoints="all", jitter=0.4, pointpos=0, boxmean=True, customdata=sweep_ids,
                                 hovertemplate="%{customdata}<br>effect %{y:+.4f}<extra></extra>", showlegend=False), row=r, col=c)
            all_eff = sweep.effects.ravel()
            fig.add_trace(go.Box(y=all_eff, x=["all heads (means)"] * len(all_eff), name="all heads", marker_color=OTHER_COLOR,
                                 boxpoints="outliers", showlegend=False,
                                 hovertemplate="mean effect %{y:+.4f}<extra>all heads</extra>"), row=r, col=c)
            fig.add_hline(y=0, line={"color": "black", "width": 1, "dash": "dot"}, row=r, col=c)
            fig.update_yaxes(title_text="change of logit(Yes) - logit(No)", row=r, col=c)
        elif panel == "dla":
            keys = ["via_yes", "via_no", "via_other"]
            fig.add_trace(go.Bar(x=["via yes candidate", "via no candidate", "via other tokens"], y=[split[k] for k in keys],
                                 marker_color=[YES_COLOR, NO_COLOR, OTHER_COLOR], showlegend=False,
                                 hovertemplate="%{x}<br>%{y:+.4f}<extra></extra>"), row=r, col=c)
            fig.add_hline(y=0, line={"color": "black", "width": 1}, row=r, col=c)
            fig.update_yaxes(title_text="logit(Yes) - logit(No)", row=r, col=c)
    eff = f", ablation effect {nums['effect']:+.3f} +- {nums['effect_stderr']:.3f}" if sweep is not None else ""
    default = (f"Head {nums['head']} of {getattr(model, 'name', '')}: mean NAS {nums['nas_mean']:.3f} +- {nums['nas_stderr']:.3f}, "
               f"rank {nums['rank']} of {nums['n_heads']}{eff}<br><sup>n={nas.n} examples ({nas.format}); NAS > 0: attends "
               f"more to \"No\" than to \"Yes\"; boxes: median and quartiles, dashed: mean</sup>")
    fig.update_layout(title={"text": title or default, "font": {"size": 13}}, width=980, height=330 * nrows + 120,
                      legend={"orientation": "h", "y": -0.08}, margin={"t": 110})
    return fig


# ------------------------------------------------------------------------------------------ heatmap with details


def _hover_lines(nums: dict[str, Any]) -> str:
    def f(x: Any, spec: str = ".3f") -> str:
        return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)

    lines = [f"<b>head {nums['head']}</b> (rank {nums['rank']} of {nums['n_heads']})",
             f"NAS mean {f(nums['nas_mean'], '.4f')} +- {f(nums['nas_stderr'], '.4f')} (n {nums['n']})",
             f"gold yes {f(nums['nas_gold_yes'])} / gold no {f(nums['nas_gold_no'])}",
             f"answer yes {f(nums['nas_pred_yes'])} / answer no {f(nums['nas_pred_no'])}"]
    if "effect" in nums:
        lines.append(f"ablation effect {f(nums['effect'], '+.4f')} +- {f(nums['effect_stderr'], '.4f')} (rank {nums['effect_rank']})")
    if "via_yes" in nums:
        lines.append(f"DLA via yes {f(nums['via_yes'], '+.3f')}, via no {f(nums['via_no'], '+.3f')}, other {f(nums['via_other'], '+.3f')}")
    return "<br>".join(lines)


def nas_heatmap_detailed(nas: NASResult, sweep: EffectSweepResult | None = None, dla: Any = None,
                         title: str | None = None) -> go.Figure:
    """:func:`nasa_lens.plots.nas_heatmap` whose hover text carries every head's key numbers
    (:func:`head_numbers`): rank, stderr, the gold-label and answer splits, and the ablation effect and DLA
    split when given. The heatmap the linked widget clicks on, and what a plain HTML export shows."""
    from nasa_lens.plots.nas import nas_heatmap

    fig = nas_heatmap(nas, title=title)
    means = dla_means(dla)  # once, not per head
    text = [[_hover_lines(head_numbers(nas, (layer, h), sweep, means)) for h in range(nas.n_heads)] for layer in range(nas.n_layers)]
    fig.update_traces(text=text, hovertemplate="%{text}<extra></extra>")
    return fig
