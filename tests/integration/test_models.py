"""SmolLM2 loads from the float cache."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.mark.slow
def test_smollm2_loads_from_the_float_cache(smol):
    assert (smol.n_layers, smol.n_heads, smol.n_kv_heads) == (30, 9, 3)
    folder = Path(smol.source)
    assert (folder / "config.json").is_file() and list(folder.glob("*.safetensors"))
    ids = smol.tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        top = smol.bridge(ids)[0, -1].argmax().item()
    assert smol.tokenizer.decode([top]).strip() == "Paris"
