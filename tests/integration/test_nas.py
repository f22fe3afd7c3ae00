"""The NAS correctness anchor on SmolLM2: hook NAS equals NAS recomputed from a separate Hugging Face copy's attentions."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import QUESTIONS
from nasa_lens.nas import nas_hooks
from nasa_lens.prompts import build_batch
from unit.test_nas import hf_attentions, reference_nas


# ------------------------------------------------------------------------------------------ SmolLM2 anchor


@pytest.fixture(scope="module")
def smol_hf():
    from transformers import AutoModelForCausalLM

    from nasa_lens.models import BUILTIN_MODELS, _cached_gguf_as_hf

    folder = _cached_gguf_as_hf("smollm2-135m-instruct", BUILTIN_MODELS["smollm2-135m-instruct"])
    return AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32).eval()


@pytest.mark.slow
def test_hook_nas_matches_hf_attentions_smollm2(smol, smol_hf):
    """Both positions modes from ONE bridge forward (two NAS hook sets side by side) and one HF forward."""
    batch = build_batch(smol, [QUESTIONS[0], QUESTIONS[3]])
    assert (batch.attention_mask == 0).any()
    hooks_after, after = nas_hooks(batch, positions="after")
    hooks_last, last = nas_hooks(batch, positions="last")
    with torch.no_grad():
        smol.bridge.run_with_hooks(batch.input_ids, fwd_hooks=[*hooks_after, *hooks_last], **batch.forward_kwargs())
    attentions = hf_attentions(smol_hf, batch)
    for positions, store in (("after", after), ("last", last)):
        got = torch.stack([store[layer] for layer in range(smol.n_layers)], dim=1)
        ref = reference_nas(attentions, batch.input_ids, batch.pos_yes, batch.pos_no, positions)
        assert got.shape == (2, 30, 9)
        assert np.abs(ref).max() > 1.0
        np.testing.assert_allclose(got.numpy(), ref, atol=1e-4, err_msg=f"positions={positions}")
    assert [smol.kv_group(h) for h in range(smol.n_heads)] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
