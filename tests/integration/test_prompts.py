"""Prompts on SmolLM2: candidate positions and answer tokens, padding does not change p_yes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nasa_lens.evaluate import answer_logits, p_yes_from_logits
from nasa_lens.prompts import build_batch


@pytest.mark.slow
def test_smollm2_positions_and_answer_tokens(smol, questions):
    batch = build_batch(smol, questions)
    assert (batch.answer_yes_id, batch.answer_no_id) == (10539, 5230)  # "Yes", "No"
    assert int(batch.input_ids[0, batch.pos_yes[0]]) == 9230  # " Yes"
    assert int(batch.input_ids[0, batch.pos_no[0]]) == 2838  # " No"


@pytest.mark.slow
def test_padding_does_not_change_p_yes(smol, questions):
    """Batched (left-padded) p_yes equals one-at-a-time p_yes to 1e-4 for every example."""
    with torch.no_grad():
        batched = p_yes_from_logits(answer_logits(smol, build_batch(smol, questions)))
        single = torch.cat([p_yes_from_logits(answer_logits(smol, build_batch(smol, [q]))) for q in questions])
    np.testing.assert_allclose(batched.numpy(), single.numpy(), atol=1e-4)
    assert len(set(build_batch(smol, [q]).seq_len for q in questions)) > 1
