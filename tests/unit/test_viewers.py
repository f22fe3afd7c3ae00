"""Viewers (attention, head card, detailed heatmap) and the linked widget: the values they show equal the
results they read, cross-checked against NAS; bad input raises a NasaLensError naming the problem."""
from __future__ import annotations

import html
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from nasa_lens.plots import attention as viewers
from nasa_lens.plots import head_card as cards
from nasa_lens.causal import EffectSweepResult
from nasa_lens.heads import HeadSpecError
from nasa_lens.nas import NASResult, nas_from_pattern, nas_query_mask, scan_nas
from nasa_lens.prompts import PromptError, PromptFormat, build_batch
from nasa_lens.vocab import NasaLensError

RAW_MARKERS = ("Ġ", "Ċ", "▁", "ĉ")


@pytest.fixture(scope="module")
def nas_tiny(tiny):
    from tests.conftest import QUESTIONS

    return scan_nas(tiny, QUESTIONS, progress=False)


# ------------------------------------------------------------------------------------------ token labels


def test_token_labels_decode_one_by_one_with_visible_whitespace(tiny):
    tok = tiny.tokenizer
    ids = tok("Is 7  prime?\n\tYes", add_special_tokens=False)["input_ids"]
    labels = viewers.token_labels(tok, ids)
    assert "".join(labels).replace("␣", " ").replace("↵", "\n").replace("⇥", "\t") == "Is 7  prime?\n\tYes"
    assert "␣prime" in labels and "↵" in labels and "⇥" in labels
    assert not any(m in "".join(labels) for m in RAW_MARKERS)
    special = tok.convert_tokens_to_ids("<|im_start|>")
    assert viewers.token_label(tok, special) == "<|im_start|>"


def test_unique_labels_suffix_only_repeats():
    assert viewers.unique_labels(["a", "␣b", "a", "c"]) == ["a·0", "␣b", "a·2", "c"]


# ------------------------------------------------------------------------------------------ attention


def test_attention_view_matches_nas_and_positions(tiny, questions):
    ex = questions[1]
    view = viewers.attention_view(tiny, ex, "0.1,1.3")
    batch = build_batch(tiny, [ex])
    assert (view.pos_yes, view.pos_no, view.pos_answer) == (int(batch.pos_yes[0]), int(batch.pos_no[0]), int(batch.pos_answer[0]))
    assert view.tokens[view.pos_yes] == "␣Yes" and view.tokens[view.pos_no] == "␣No"
    assert view.pattern.shape == (2, view.n_tokens, view.n_tokens)
    np.testing.assert_allclose(view.pattern.sum(-1), 1.0, atol=1e-4)  # probabilities
    assert np.allclose(np.triu(view.pattern, k=1), 0)  # causal
    # the NAS of the viewed pattern equals the scan's NAS of the same heads
    scan = scan_nas(tiny, [ex], progress=False)
    mask = nas_query_mask(batch)
    got = nas_from_pattern(torch.tensor(view.pattern)[None], batch.pos_yes, batch.pos_no, mask)[0]
    np.testing.assert_allclose(got.numpy(), [scan.scores[0, 0, 1], scan.scores[0, 1, 3]], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(view.p_yes, scan.p_yes[0], atol=1e-5)
    frame = view.to_dataframe()
    assert len(frame) == 2 * view.n_tokens**2
    assert set(frame.loc[frame.key == view.pos_no, "key_role"]) == {"no"}


def test_attention_figure_traces_dropdown_and_labels(tiny, questions):
    view = viewers.attention_view(tiny, questions[0], [(0, 1), (1, 3), (1, 0)])
    fig = viewers.attention_figure(view, mode="both")
    assert len(fig.data) == 6  # heatmap + answer bars per head
    np.testing.assert_allclose(np.asarray(fig.data[2].z, float), view.pattern[1])
    np.testing.assert_allclose(np.asarray(fig.data[3].y, float), view.pattern[1, view.pos_answer])
    assert [t.visible for t in fig.data] == [True, True, False, False, False, False]
    (menu,) = fig.layout.updatemenus
    assert [b.label for b in menu.buttons] == ["head 0.1", "head 1.3", "head 1.0"]
    assert menu.buttons[2].args[0]["visible"] == [False, False, False, False, True, True]
    ticks = list(fig.layout.xaxis.ticktext)
    assert ticks == [html.escape(t, quote=False) for t in view.tokens]  # specials escaped for plotly's pseudo-HTML
    assert "&lt;|im_start|&gt;" in ticks
    assert list(fig.layout.xaxis.tickvals) == list(range(view.n_tokens))  # numeric axis: repeats never merge
    colors = list(fig.data[1].marker.color)
    assert colors[view.pos_yes] == "#2166ac" and colors[view.pos_no] == "#b2182b"
    # NAS rows only: queries after the later candidate through the answer
    nas_rows = viewers.attention_figure(view, mode="matrix", rows="nas")
    assert list(nas_rows.data[0].y) == list(range(view.pos_no + 1, view.n_tokens))
    single = viewers.show_attention(tiny, questions[0], (1, 2), mode="answer")
    assert len(single.data) == 1 and not single.layout.updatemenus


def test_attention_bad_input(tiny, questions):
    with pytest.raises(HeadSpecError, match="layer 5 out of range .*2 layers"):
        viewers.show_attention(tiny, questions[0], "5.0")
    with pytest.raises(HeadSpecError, match="head 4 out of range"):
        viewers.show_attention(tiny, questions[0], [(1, 4)])
    with pytest.raises(HeadSpecError, match="name the heads"):
        viewers.show_attention(tiny, questions[0], None)
    raw = PromptFormat(template="{question}")
    with pytest.raises(PromptError, match=r"example 'q0'.*candidate 'Yes'"):
        viewers.show_attention(tiny, questions[0], "0.0", fmt=raw)
    with pytest.raises(NasaLensError):
        viewers.show_attention(tiny, questions[0], "0.0", fmt="maybe-not")
    with pytest.raises(ValueError, match="mode"):
        viewers.attention_figure(viewers.attention_view(tiny, questions[0], "0.0"), mode="cube")


# ------------------------------------------------------------------------------------------ head card


def _sweep(nas: NASResult) -> EffectSweepResult:
    per = np.arange(nas.scores.size, dtype=float).reshape(nas.scores.shape) / 100.0
    return EffectSweepResult(per_example=per, method="exact", mode="mean", seconds=0.0, ids=list(nas.ids))


def test_head_card_panels_equal_their_inputs(tiny, questions, nas_tiny):
    head = (1, 2)
    sweep = _sweep(nas_tiny)
    dla = SimpleNamespace(via_yes=np.full((2, 4), 0.5), via_no=-np.ones((2, 4)), via_other=np.zeros((2, 4)))
    fig = cards.head_card(tiny, questions, head, sweep=sweep, dla=dla, nas=nas_tiny)
    titles = [a.text for a in fig.layout.annotations]
    assert titles[:3] == ["NAS by gold label", "NAS by the model's answer", "attention to the candidates after them"]
    assert titles[3].startswith("ablation effect (rank") and titles[4] == "direct logit attribution, by source"
    col = nas_tiny.scores[:, 1, 2]
    gold_yes, gold_no = fig.data[0], fig.data[1]
    np.testing.assert_allclose(np.asarray(gold_yes.y, float), col[nas_tiny.labels == 1])
    np.testing.assert_allclose(np.asarray(gold_no.y, float), col[nas_tiny.labels == 0])
    # attention to the candidates at offset 0 = the answer row, cross-checked against the attention viewer
    to_yes = next(t for t in fig.data if t.name == "attention to the yes candidate")
    at0 = [viewers.attention_view(tiny, ex, [head]) for ex in questions]
    want = np.mean([v.pattern[0, v.pos_answer, v.pos_yes] for v in at0])
    assert list(to_yes.x)[-1] == 0
    np.testing.assert_allclose(float(to_yes.y[-1]), want, rtol=1e-4)
    effect = next(t for t in fig.data if t.name == "this head")
    np.testing.assert_allclose(np.asarray(effect.y, float), sweep.per_example[:, 1, 2])
    bars = fig.data[-1]
    np.testing.assert_allclose(np.asarray(bars.y, float), [0.5, -1.0, 0.0])
    assert "Head 1.2" in fig.layout.title.text and "ablation effect" in fig.layout.title.text
    # without sweep / DLA those panels are left out
    bare = cards.head_card(tiny, questions, "1.2", nas=nas_tiny)
    assert len(bare.layout.annotations) == 3


def test_dla_split_accepts_arrays_and_tables():
    per_example = SimpleNamespace(via_yes=np.ones((3, 2, 2)) * np.array([1, 2, 3])[:, None, None],
                                  via_no=np.zeros((3, 2, 2)), via_other=np.ones((3, 2, 2)))
    assert cards._dla_split(per_example, (1, 0)) == {"via_yes": 2.0, "via_no": 0.0, "via_other": 1.0}
    table = pd.DataFrame({"layer": [0, 1], "head": [1, 0], "via_yes": [0.1, 0.2], "via_no": [0.3, -0.4], "via_other": [0.0, 0.5]})
    assert cards._dla_split(SimpleNamespace(per_head=table), (1, 0)) == {"via_yes": 0.2, "via_no": -0.4, "via_other": 0.5}
    assert cards._dla_split(SimpleNamespace(to_dataframe=lambda: table), (0, 1))["via_no"] == 0.3
    assert cards._dla_split(None, (0, 0)) is None
    # a DLAResult (nasa_lens.dla): heads [example, layer, head, 3] read through source(name)
    heads = np.arange(2 * 2 * 2 * 3, dtype=float).reshape(2, 2, 2, 3)
    like_dla = SimpleNamespace(source=lambda k: heads[..., ("via_yes", "via_no", "via_other").index(k)])
    assert cards._dla_split(like_dla, (1, 1)) == {"via_yes": 15.0, "via_no": 16.0, "via_other": 17.0}
    # a long per-example table: rows of a head are averaged
    long = pd.DataFrame({"layer": [0, 0, 1], "head": [0, 0, 0], "via_yes": [1.0, 3.0, 5.0], "via_no": 0.0, "via_other": 0.0})
    means = cards.dla_means(SimpleNamespace(table=lambda: long))
    assert means["via_yes"].tolist() == [[2.0], [5.0]]
    assert cards.dla_means(means) is means
    with pytest.raises(TypeError, match="via_yes"):
        cards._dla_split(SimpleNamespace(x=1), (0, 0))


def test_head_numbers_and_detailed_heatmap_hover():
    scores = np.zeros((4, 2, 2))
    scores[:, 1, 1] = [1.0, 3.0, 5.0, 7.0]  # the top head; mean 4
    scores[:, 0, 0] = -1.0
    nas = NASResult(scores=scores, ids=list("abcd"), labels=np.array([1, 1, 0, 0]), preds=np.array([0, 0, 0, 1]),
                    p_yes=np.array([0.1, 0.2, 0.3, 0.9]), model="m", dataset="d")
    nums = cards.head_numbers(nas, (1, 1))
    assert nums["rank"] == 1 and nums["n_heads"] == 4 and nums["nas_mean"] == 4.0
    assert (nums["nas_gold_yes"], nums["nas_gold_no"]) == (2.0, 6.0)
    assert (nums["nas_pred_yes"], nums["nas_pred_no"]) == (7.0, 3.0)
    np.testing.assert_allclose(nums["nas_stderr"], np.std([1, 3, 5, 7], ddof=1) / 2)
    assert cards.head_numbers(nas, (0, 0))["rank"] == 4
    fig = cards.nas_heatmap_detailed(nas)
    text = fig.data[0].text[1][1]
    assert "head 1.1" in text and "rank 1 of 4" in text and "NAS mean 4.0000" in text and "gold yes 2.000 / gold no 6.000" in text


# ------------------------------------------------------------------------------------------ linked widget


def test_explorer_click_updates_card_and_attention(tiny, questions, nas_tiny):
    pytest.importorskip("ipywidgets")
    pytest.importorskip("anywidget")
    from nasa_lens.plots.widgets import NASExplorer

    ex = NASExplorer(tiny, questions, nas_tiny, sweep=_sweep(nas_tiny))
    assert ex.card is None and ex.details.children == ()
    hover = ex.heatmap.data[0].text[1][3]
    assert "head 1.3" in hover and "ablation effect" in hover
    ex.on_click(ex.heatmap.data[0], SimpleNamespace(xs=[3], ys=[1], point_inds=[[1, 3]]), None)  # what a click does
    assert ex.head == (1, 3)
    assert ex.details.children == (ex.card, ex.attention)
    assert ex.card.layout.title.text.startswith("Head 1.3 of tiny-random")
    assert "example q0" in ex.attention.layout.title.text and "1.3" in ex.attention.layout.title.text
    ex.set_example("q4")  # by id; the drop-down follows
    assert ex.example == 4 and ex.picker.value == 4 and "example q4" in ex.attention.layout.title.text
    ex.picker.value = 2  # the drop-down drives the attention too
    assert "example q2" in ex.attention.layout.title.text
    ex.on_click(None, SimpleNamespace(xs=[], ys=[]), None)  # a click outside the cells changes nothing
    assert ex.head == (1, 3)
    with pytest.raises(HeadSpecError, match="out of range"):
        ex.select((7, 0))
    with pytest.raises(viewers.ExampleError, match="out of range"):
        ex.set_example(99)
    with pytest.raises(viewers.ExampleError, match="6 examples but data has 2"):
        NASExplorer(tiny, questions[:2], nas_tiny)
