"""Prompt properties on the real tokenizers (SmolLM2, Gemma 3)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unit.test_properties import QUESTION, _check_batched_equals_single, _check_prompt_properties, templates
SLOW = settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


class _TokenizerOnly:
    """What the prompt builder reads of a model (tokenizer, chat flag, name, device, context window),
    without loading the weights: Gemma's bridge takes half a minute to boot on two cores."""

    def __init__(self, name: str, folder: Path) -> None:
        from transformers import AutoTokenizer

        self.name, self.tokenizer = name, AutoTokenizer.from_pretrained(folder)
        self.tokenizer.padding_side = "left"
        self.chat = bool(getattr(self.tokenizer, "chat_template", None))
        self.n_ctx = json.loads((folder / "config.json").read_text()).get("max_position_embeddings")
        self.device = torch.device("cpu")


@pytest.fixture(scope="module")
def gemma():
    from nasa_lens.models import BUILTIN_MODELS, _cached_gguf_as_hf

    return _TokenizerOnly("gemma3-270m", _cached_gguf_as_hf("gemma3-270m", BUILTIN_MODELS["gemma3-270m"]))


@pytest.mark.slow
@SLOW
@given(question=QUESTION, fmt=templates(), questions=st.lists(QUESTION, min_size=1, max_size=3))
def test_prompt_properties_smollm2(smol, question, fmt, questions):
    _check_prompt_properties(smol, question, fmt)
    _check_batched_equals_single(smol, questions, fmt)


@pytest.mark.slow
@SLOW
@given(question=QUESTION, fmt=templates(), questions=st.lists(QUESTION, min_size=1, max_size=3))
def test_prompt_properties_gemma(gemma, question, fmt, questions):
    _check_prompt_properties(gemma, question, fmt)
    _check_batched_equals_single(gemma, questions, fmt)
