"""The attention viewer: one prompt's attention for any number of heads, the candidates and the answer marked.

:func:`attention_view` runs one prompt and keeps the attention of the selected heads
(``blocks.{l}.attn.hook_pattern`` through ``run_with_cache(names_filter=...)``), with readable token labels and
the positions :func:`nasa_lens.prompts.build_batch` found (the two candidates, the answer position);
:func:`attention_figure` draws it, :func:`show_attention` does both. (The one module of ``plots`` that runs the
model: a viewer needs the pattern of one prompt, which no result object keeps.)

Token labels are decoded one token at a time with the tokenizer (never read from raw vocabulary strings,
whose byte-level ``Ġ``/``Ċ`` or sentencepiece ``▁`` markers are unreadable), with whitespace drawn as
visible glyphs (``␣`` space, ``↵`` newline, ``⇥`` tab) and special tokens kept as text. Axes are numeric
token positions with the labels as tick text, so repeated tokens (two ``␣the``) never merge into one
category.

Plotly: renders in Jupyter, in an HTML file and as PNG (:func:`nasa_lens.plots.save_figure`), offline. The head
card is :mod:`nasa_lens.plots.head_card`, the linked heatmap :mod:`nasa_lens.plots.widgets`.
"""
from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from jaxtyping import Float
from plotly.subplots import make_subplots

from nasa_lens.heads import Head, HeadSpecError, format_head, parse_heads
from nasa_lens.prompts import PromptFormat, build_batch
from nasa_lens.vocab import NasaLensError

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel

__all__ = [
    "WHITESPACE_GLYPHS",
    "AttentionView",
    "ExampleError",
    "token_label",
    "token_labels",
    "unique_labels",
    "attention_view",
    "attention_figure",
    "show_attention",
]

WHITESPACE_GLYPHS: dict[str, str] = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍", "\u00a0": "⍽"}
"""How whitespace is drawn in token labels."""

YES_COLOR, NO_COLOR, _ANSWER_COLOR, OTHER_COLOR = "#2166ac", "#b2182b", "#1b9e77", "#969696"
_ATTN_SCALE = "Blues"


class ExampleError(NasaLensError, ValueError):
    """An example index or id that the data does not have."""


# ------------------------------------------------------------------------------------------ token labels


def token_label(tokenizer: Any, token_id: int) -> str:
    """One token as readable text: decoded alone by the tokenizer, whitespace drawn as glyphs.

    Special tokens (``<|im_start|>``, ``<bos>``) stay as their text; a token that is only part of a UTF-8
    character (byte fallback) shows its vocabulary name when the tokenizer writes bytes as ``<0x..>``, else
    ``�``; an empty decode shows ``∅``.
    """
    text = tokenizer.decode([int(token_id)], skip_special_tokens=False, clean_up_tokenization_spaces=False)
    if "\ufffd" in text:
        raw = tokenizer.convert_ids_to_tokens(int(token_id))
        if isinstance(raw, str) and raw.startswith("<0x") and raw.endswith(">"):
            return raw
    if text == "":
        return "∅"
    return "".join(WHITESPACE_GLYPHS.get(ch, ch) for ch in text)


def token_labels(tokenizer: Any, token_ids: Sequence[int]) -> list[str]:
    """:func:`token_label` of every id (one decode per token)."""
    return [token_label(tokenizer, int(t)) for t in token_ids]


def unique_labels(labels: Sequence[str]) -> list[str]:
    """The labels, with a repeated label suffixed by its position (``␣the``, ``␣the·7``), for plotly
    categorical axes (which merge equal category names). The viewers use numeric axes instead; this is for
    callers that draw tokens as categories."""
    seen: dict[str, int] = {}
    for lab in labels:
        seen[lab] = seen.get(lab, 0) + 1
    return [lab if seen[lab] == 1 else f"{lab}·{i}" for i, lab in enumerate(labels)]


def _esc(text: str) -> str:
    """Escape for plotly's pseudo-HTML text (``<|im_start|>`` would otherwise vanish as a tag)."""
    return html.escape(text, quote=False)


# ------------------------------------------------------------------------------------------ one prompt


@dataclass
class AttentionView:
    """The attention of some heads on one prompt.

    Attributes:
        pattern: ``[head, query, key]`` attention probabilities of ``heads`` (padding removed).
        heads: the heads, in the order of ``pattern``.
        tokens: readable token labels (:func:`token_labels`).
        token_ids: the prompt's token ids.
        pos_yes, pos_no, pos_answer: positions of the instruction's candidates and of the answer.
        answer_yes, answer_no: labels of the two answer tokens.
        p_yes: the model's ``softmax(logit_yes, logit_no)[0]`` at the answer position.
        example_id, label: the example's id and gold label (``"yes"`` / ``"no"`` / None).
        model: the model's name; format: the prompt format label.
    """

    pattern: Float[np.ndarray, "head query key"]
    heads: list[Head]
    tokens: list[str]
    token_ids: list[int]
    pos_yes: int
    pos_no: int
    pos_answer: int
    p_yes: float
    example_id: str = ""
    label: str | None = None
    answer_yes: str = "Yes"
    answer_no: str = "No"
    model: str = ""
    format: str = "Yes/No"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    def answer_row(self, head: Head) -> Float[np.ndarray, " key"]:
        """The attention of ``head`` from the answer position to every token."""
        return self.pattern[self.heads.index(tuple(head)), self.pos_answer]

    def to_dataframe(self) -> pd.DataFrame:
        """Long format: one row per head x query x key: ``head, layer, query, key, query_token, key_token,
        attention``, plus ``key_role`` (``yes`` / ``no`` / ``other``)."""
        n_h, n_q, n_k = self.pattern.shape
        hh, qq, kk = np.meshgrid(np.arange(n_h), np.arange(n_q), np.arange(n_k), indexing="ij")
        hh, qq, kk = hh.ravel(), qq.ravel(), kk.ravel()
        role = np.where(kk == self.pos_yes, "yes", np.where(kk == self.pos_no, "no", "other"))
        return pd.DataFrame(
            {
                "head": [format_head(self.heads[i]) for i in hh],
                "layer": [self.heads[i][0] for i in hh],
                "query": qq,
                "key": kk,
                "query_token": np.asarray(self.tokens, dtype=object)[qq],
                "key_token": np.asarray(self.tokens, dtype=object)[kk],
                "attention": self.pattern.ravel(),
                "key_role": role,
            }
        )


def resolve_heads(model: LoadedModel, heads: Any, ranking: np.ndarray | None = None) -> list[Head]:
    """Heads from a spec (``"18.4,3.2"``, ``"top:4"`` with a ranking, a ``(layer, head)`` or a list of them)."""
    if heads is None:
        raise HeadSpecError("name the heads to show, e.g. heads='18.4,3.2', heads=[(18, 4)] or heads='top:4' with a NAS ranking")
    if isinstance(heads, tuple) and len(heads) == 2 and all(isinstance(x, (int, np.integer)) for x in heads):
        heads = [heads]
    return parse_heads(heads, model.n_layers, model.n_heads, ranking)


def pick_example(data: Sequence[Any], example: Any) -> Any:
    """``example`` as an object: an index into ``data``, an example id, or an example / prompt itself."""
    if isinstance(example, (int, np.integer)) and not isinstance(example, bool):
        if not -len(data) <= int(example) < len(data):
            raise ExampleError(f"example {int(example)} out of range: the data has {len(data)} examples")
        return data[int(example)]
    if isinstance(example, str) and data:
        for ex in data:
            if str(getattr(ex, "id", None)) == example:
                return ex
        if all(hasattr(ex, "id") for ex in data):
            raise ExampleError(f"no example with id {example!r} in the data ({len(data)} examples)")
    return example


@torch.no_grad()
def attention_view(
    model: LoadedModel,
    example: Any,
    heads: Any,
    fmt: PromptFormat | str | None = None,
    *,
    ranking: np.ndarray | None = None,
) -> AttentionView:
    """Run one prompt and keep the attention of ``heads``.

    Args:
        model: a loaded model.
        example: an ``Example`` (question, label, id) or a raw question string.
        heads: ``"L.H,L.H"``, ``(layer, head)``, a list of those, or ``"top:K"`` / ``"bottom:K"`` with ``ranking``.
        fmt: a :class:`PromptFormat` or a preset name (``"yes-no"``, ``"no-yes"``...).
        ranking: ``[layer, head]`` mean NAS, for ``top:K`` specs.

    Raises:
        HeadSpecError: a head the model does not have (names the layer/head and the model's size).
        PromptError: the prompt cannot be built (e.g. it lacks a candidate word; names the example).
    """
    fmt = PromptFormat.of(fmt)
    head_list = resolve_heads(model, heads, ranking)
    batch = build_batch(model, [example], fmt)  # one row: no padding
    layers = sorted({layer for layer, _ in head_list})
    names = {f"blocks.{layer}.attn.hook_pattern" for layer in layers}
    logits, cache = model.bridge.run_with_cache(batch.input_ids, names_filter=lambda n: n in names, **batch.forward_kwargs())
    pattern = np.stack(
        [cache[f"blocks.{layer}.attn.hook_pattern"][0, head].float().cpu().numpy() for layer, head in head_list]
    )
    pair = logits[0, -1, [batch.answer_yes_id, batch.answer_no_id]].float()
    ids = batch.input_ids[0].tolist()
    tok = model.tokenizer
    label = {1: "yes", 0: "no"}.get(int(batch.labels[0]))
    return AttentionView(
        pattern=pattern,
        heads=head_list,
        tokens=token_labels(tok, ids),
        token_ids=ids,
        pos_yes=int(batch.pos_yes[0]),
        pos_no=int(batch.pos_no[0]),
        pos_answer=int(batch.pos_answer[0]),
        p_yes=float(torch.softmax(pair, -1)[0]),
        example_id=batch.ids[0],
        label=label,
        answer_yes=token_label(tok, batch.answer_yes_id),
        answer_no=token_label(tok, batch.answer_no_id),
        model=getattr(model, "name", ""),
        format=fmt.label,
    )


def _marker_shapes(view: AttentionView, yref: str, xref: str, *, rows: bool) -> list[dict[str, Any]]:
    """Outlines of the candidate key columns (and the answer query row) on a heatmap."""
    shapes = []
    for pos, color in ((view.pos_yes, YES_COLOR), (view.pos_no, NO_COLOR)):
        shapes.append(dict(type="rect", xref=xref, yref=f"{yref} domain", x0=pos - 0.5, x1=pos + 0.5, y0=0, y1=1,
                           line={"color": color, "width": 2}, fillcolor="rgba(0,0,0,0)"))
    if rows:
        shapes.append(dict(type="rect", xref=f"{xref} domain", yref=yref, x0=0, x1=1, y0=view.pos_answer - 0.5,
                           y1=view.pos_answer + 0.5, line={"color": _ANSWER_COLOR, "width": 2}, fillcolor="rgba(0,0,0,0)"))
    return shapes


def attention_figure(view: AttentionView, *, mode: str = "both", rows: str = "all", title: str | None = None) -> go.Figure:
    """Draw an :class:`AttentionView`.

    Args:
        mode: ``"matrix"`` (query rows x key tokens), ``"answer"`` (the answer position's attention as token
            bars) or ``"both"`` (matrix above, answer row below).
        rows: ``"all"`` query rows, or ``"nas"``: the rows NAS sums over (after the later candidate through
            the answer position).
        title: default: model, example, gold label and ``p(yes)``.

    Candidates are outlined (blue "yes", red "no") and the answer row green. With several heads a dropdown
    selects the head shown (one head visible at a time); the colour scale of each head is clipped at its
    largest attention to any token but the first (the "sink" that often takes most attention; hover shows
    every true value).
    """
    if mode not in ("matrix", "answer", "both"):
        raise ValueError(f"mode must be 'matrix', 'answer' or 'both', got {mode!r}")
    if rows not in ("all", "nas"):
        raise ValueError(f"rows must be 'all' or 'nas', got {rows!r}")
    n = view.n_tokens
    labels = [_esc(t) for t in view.tokens]
    q_lo = max(view.pos_yes, view.pos_no) + 1 if rows == "nas" else 0
    q_idx = np.arange(q_lo, n)
    k_idx = np.arange(n)
    panels = ["matrix", "answer"] if mode == "both" else [mode]
    heights = {"matrix": max(260, 9 * len(q_idx) + 80), "answer": 220}
    fig = make_subplots(rows=len(panels), cols=1, vertical_spacing=0.12 if len(panels) > 1 else 0.0,
                        row_heights=[heights[p] for p in panels])
    per_head = 0
    for i, head in enumerate(view.heads):
        pat = view.pattern[i]
        off_sink = pat[:, 1:] if n > 1 else pat
        cap = float(np.nanmax(off_sink)) if off_sink.size and np.nanmax(off_sink) > 0 else 1.0
        name = format_head(head)
        visible = i == 0
        per_head = 0
        for r, panel in enumerate(panels, start=1):
            if panel == "matrix":
                sub = pat[q_idx]
                hover = [[f"query {q} {labels[q]}<br>key {k} {labels[k]}<br>attention {sub[a, k]:.4f}" for k in k_idx]
                         for a, q in enumerate(q_idx)]
                fig.add_trace(go.Heatmap(z=sub, x=k_idx, y=q_idx, zmin=0, zmax=cap, colorscale=_ATTN_SCALE, name=name,
                                         text=hover, hovertemplate="%{text}<extra>head " + name + "</extra>", visible=visible,
                                         colorbar={"title": {"text": "attention"}, "len": 0.55, "y": 1, "yanchor": "top"}),
                              row=r, col=1)
            else:
                row = pat[view.pos_answer]
                colors = [YES_COLOR if k == view.pos_yes else NO_COLOR if k == view.pos_no else OTHER_COLOR for k in k_idx]
                fig.add_trace(go.Bar(x=k_idx, y=row, marker_color=colors, name=name, visible=visible,
                                     customdata=labels, hovertemplate="key %{x} %{customdata}<br>attention %{y:.4f}<extra>head "
                                     + name + " from the answer position</extra>", showlegend=False), row=r, col=1)
            per_head += 1
    n_traces = per_head * len(view.heads)
    tickvals = list(k_idx)
    for r, panel in enumerate(panels, start=1):
        fig.update_xaxes(tickmode="array", tickvals=tickvals, ticktext=labels, tickangle=-90, tickfont={"size": 9},
                         range=[-0.5, n - 0.5], row=r, col=1)
        if panel == "matrix":
            fig.update_yaxes(tickmode="array", tickvals=list(q_idx), ticktext=[labels[q] for q in q_idx], tickfont={"size": 9},
                             autorange="reversed", title_text="query token", row=r, col=1)
        else:
            fig.update_yaxes(title_text="attention from answer", rangemode="tozero", row=r, col=1)
    shapes = []
    for r, panel in enumerate(panels, start=1):
        xref = "x" if r == 1 else f"x{r}"
        yref = "y" if r == 1 else f"y{r}"
        shapes += _marker_shapes(view, yref, xref, rows=panel == "matrix")
    fig.update_layout(shapes=shapes)
    if len(view.heads) > 1:
        buttons = []
        for i, head in enumerate(view.heads):
            vis = [False] * n_traces
            vis[i * per_head:(i + 1) * per_head] = [True] * per_head
            buttons.append({"label": f"head {format_head(head)}", "method": "update", "args": [{"visible": vis}]})
        fig.update_layout(updatemenus=[{"buttons": buttons, "direction": "down", "x": 0.0, "xanchor": "left", "y": 1.0,
                                        "yanchor": "bottom", "pad": {"b": 30}, "showactive": True, "active": 0}])
    gold = f", gold {view.label}" if view.label else ""
    heads_txt = format_head(view.heads[0]) if len(view.heads) == 1 else f"{len(view.heads)} heads (select above)"
    default = (f"Attention of {heads_txt}: {view.model}, example {view.example_id}{gold}, p(yes) {view.p_yes:.3f}"
               f"<br><sup>key columns: candidate {_esc(view.tokens[view.pos_yes])} (blue, pos {view.pos_yes}), "
               f"{_esc(view.tokens[view.pos_no])} (red, pos {view.pos_no}); answer position {view.pos_answer} (green)</sup>")
    fig.update_layout(title={"text": title or default, "font": {"size": 13}, "yref": "container", "y": 0.975, "yanchor": "top",
                             "x": 0.01, "xanchor": "left"},
                      margin={"t": 130 if len(view.heads) > 1 else 90, "b": 90, "l": 90, "r": 30},
                      width=max(640, min(1600, 11 * n + 220)), height=sum(heights[p] for p in panels) + 240,
                      plot_bgcolor="white", bargap=0.1)
    return fig


def show_attention(
    model: LoadedModel,
    example: Any,
    heads: Any,
    fmt: PromptFormat | str | None = None,
    *,
    mode: str = "both",
    rows: str = "all",
    ranking: np.ndarray | None = None,
    title: str | None = None,
) -> go.Figure:
    """One prompt's attention for the selected heads, as a plotly figure (see :func:`attention_view` and
    :func:`attention_figure`): query rows x key tokens and/or the answer row as token bars, the two candidates
    and the answer position marked, a dropdown selecting the head when there are several."""
    view = attention_view(model, example, heads, fmt, ranking=ranking)
    return attention_figure(view, mode=mode, rows=rows, title=title)
