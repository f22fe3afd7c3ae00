"""Device maps on SmolLM2: the top layers offloaded to disk give the same NAS and p_yes."""
from __future__ import annotations

import numpy as np
import pytest

from nasa_lens.models import load_model


@pytest.mark.slow
def test_smollm2_split_over_cpu_and_disk_matches(smol, questions, tmp_path):
    """SmolLM2 with its top 3 layers offloaded to disk (loaded by Hugging Face with the map)."""
    from nasa_lens.evaluate import evaluate
    from nasa_lens.nas import scan_nas

    dm = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.norm": "cpu", "lm_head": "cpu",
          **{f"model.layers.{i}": "cpu" if i < 27 else "disk" for i in range(30)}}
    model = load_model("smollm2-135m-instruct", device_map=dm, offload_folder=str(tmp_path))
    assert model.bridge.original_model.hf_device_map["model.layers.29"] == "disk"
    qs = questions[:2]
    a, b = scan_nas(smol, qs, progress=False, batch_size=2), scan_nas(model, qs, progress=False, batch_size=2)
    np.testing.assert_allclose(b.scores, a.scores, atol=1e-6, rtol=0)
    np.testing.assert_allclose(evaluate(model, qs, progress=False, n_boot=10).p_yes, a.p_yes, atol=1e-6, rtol=0)
