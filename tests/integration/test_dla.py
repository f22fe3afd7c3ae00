"""DLA on SmolLM2: the decomposition sums to the logit difference and one head matches a separate Hugging Face copy."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import QUESTIONS
from nasa_lens.dla import dla_for_batch
from nasa_lens.prompts import build_batch
from unit.test_dla import hf_head_dla


# ------------------------------------------------------------------------------------------ SmolLM2


@pytest.mark.slow
def test_smollm2_sum_and_hugging_face_cross_check(smol):
    from transformers import AutoModelForCausalLM

    from nasa_lens.models import BUILTIN_MODELS, _cached_gguf_as_hf

    batch = build_batch(smol, [QUESTIONS[0], QUESTIONS[3]])
    heads, comps, diff = dla_for_batch(smol, batch)
    residual = diff - heads.sum(dim=(1, 2, 3)) - sum(comps.values())
    assert float(residual.abs().max()) < 1e-4
    folder = _cached_gguf_as_hf("smollm2-135m-instruct", BUILTIN_MODELS["smollm2-135m-instruct"])
    hf = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32).eval()
    total, _, no = hf_head_dla(hf, batch, 18, 4)
    assert np.abs(no).max() > 1e-2
    np.testing.assert_allclose(heads[:, 18, 4].sum(-1).numpy(), total, atol=1e-4)
    np.testing.assert_allclose(heads[:, 18, 4, 1].numpy(), no, atol=1e-4)
