"""Viewer labels are readable on real tokenizers (SmolLM2, Gemma 3)."""
from __future__ import annotations

import pytest

from nasa_lens.plots import attention as viewers
from unit.test_viewers import RAW_MARKERS


# ------------------------------------------------------------------------------------------ real tokenizers


@pytest.mark.slow
@pytest.mark.parametrize("name", ["smollm2-135m-instruct", "gemma3-270m"])
def test_labels_readable_on_real_models(name, smol):
    """SmolLM2 (byte-level BPE: Ġ space, Ċ newline) and Gemma 3 (sentencepiece: ▁ space): the labels show
    neither marker, only the glyphs, and the whole prompt reads back from them."""
    from nasa_lens.models import load_model
    from nasa_lens.datasets import Example as Ex

    model = smol if name == "smollm2-135m-instruct" else load_model(name)
    ex = Ex("Is 7  a prime\nnumber?", "yes", "p7")
    view = viewers.attention_view(model, ex, [(model.n_layers - 1, 0), (0, model.n_heads - 1)])
    text = "".join(view.tokens)
    assert not any(m in text for m in RAW_MARKERS), view.tokens
    assert "␣" in text and "↵" in text
    assert view.tokens[view.pos_yes] == "␣Yes" and view.tokens[view.pos_no] == "␣No"
    whole = model.tokenizer.decode(view.token_ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    assert text.replace("␣", " ").replace("↵", "\n") == whole  # the labels read back as the prompt
    fig = viewers.attention_figure(view)
    assert not any(m in "".join(fig.layout.xaxis.ticktext) for m in RAW_MARKERS)
