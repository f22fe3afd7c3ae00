"""device_map exercised on a CPU machine: a model split over the CPU and the disk (Accelerate offload; the
disk half is loaded into memory only while its layer runs) gives exactly the undispatched results, hooks
included; and device names that do not exist here are clear errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nasa_lens.cli import main
from nasa_lens.models import ModelLoadError, load_model, parse_device_map
from nasa_lens.vocab import NasaLensError

TINY_MAP = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu",
            "model.layers.1": "disk", "model.norm": "cpu", "lm_head": "cpu"}


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    folder = tmp_path_factory.mktemp("offload")
    return load_model("tiny-random", device_map=TINY_MAP, offload_folder=str(folder)), folder


def test_layer_one_really_lives_on_disk(split):
    model, folder = split
    hf = model.bridge.original_model
    assert hf.hf_device_map["model.layers.1"] == "disk"
    assert {p.device.type for p in hf.model.layers[1].parameters()} == {"meta"}  # not in memory between runs
    assert {p.device.type for p in hf.model.layers[0].parameters()} == {"cpu"}
    assert any(folder.iterdir())  # the offloaded weights
    assert model.device.type == "cpu"


def test_hooks_run_where_their_layer_lives(tiny, split, questions):
    from nasa_lens.prompts import build_batch

    model, _ = split
    seen = {}

    def grab(key, name):
        def hook(x, hook=None):
            seen[(key, name)] = x.detach().clone()

        return hook

    names = ["blocks.1.attn.hook_pattern", "blocks.1.attn.hook_z", "blocks.0.attn.hook_z"]
    for m, key in ((tiny, "plain"), (model, "split")):
        batch = build_batch(m, questions[:3])
        m.bridge.run_with_hooks(batch.input_ids, fwd_hooks=[(n, grab(key, n)) for n in names], **batch.forward_kwargs())
    for n in names:
        assert seen[("split", n)].device.type == "cpu"
        assert torch.equal(seen[("split", n)], seen[("plain", n)]), n


def test_nas_p_yes_ablation_and_nasa_match_undispatched(tiny, split, questions):
    from nasa_lens import causal
    from nasa_lens.evaluate import evaluate
    from nasa_lens.nas import scan_nas
    from nasa_lens.finetune import NASAConfig, train_nasa

    model, _ = split
    a, b = scan_nas(tiny, questions, progress=False), scan_nas(model, questions, progress=False)
    assert np.array_equal(a.scores, b.scores) and np.array_equal(a.p_yes, b.p_yes)
    e0, e1 = evaluate(tiny, questions, progress=False, n_boot=20), evaluate(model, questions, progress=False, n_boot=20)
    assert np.array_equal(e0.p_yes, e1.p_yes)
    cfg = causal.AblationConfig(heads="1.1,0.2", n_boot=20)
    r0, r1 = causal.ablate(tiny, questions, cfg, progress=False), causal.ablate(model, questions, cfg, progress=False)
    effect = r1.after.p_yes - r1.before.p_yes
    assert np.abs(effect).max() > 1e-3  # the ablation does something
    assert np.array_equal(r0.after.p_yes - r0.before.p_yes, effect)
    ncfg = NASAConfig(heads="1.0,1.2", steps=2, batch_size=4, lr=1e-2, progress=False, eval_every=0)
    t0, t1 = train_nasa(tiny, questions, None, ncfg), train_nasa(model, questions, None, ncfg)
    for key, value in t0.adapter.to_tensors().items():
        assert value.abs().max() > 0
        torch.testing.assert_close(t1.adapter.to_tensors()[key], value, atol=1e-6, rtol=0)  # through the disk layer


@pytest.mark.parametrize("bad", [{"model.layers.0": "cuda:3"}, {"model.layers.0": 7}, {"lm_head": "meta"}, "everywhere", '{"lm_head": "npu:1"}'])
def test_device_map_naming_a_missing_device_is_a_user_error(bad):
    with pytest.raises(ModelLoadError) as info:
        parse_device_map(bad)
    assert isinstance(info.value, NasaLensError)


def test_cli_bad_device_and_device_map_exit_2_and_write_nothing(tmp_path, capsys):
    base = ["eval", "--model", "tiny-random", "--data", "arithmetic", "--limit", "4"]
    out = tmp_path / "a"
    if not torch.cuda.is_available():
        assert main([*base, "--device", "cuda", "--out", str(out)]) == 2
        assert "no CUDA" in capsys.readouterr().err
        assert not out.exists()
    out = tmp_path / "b"
    assert main([*base, "--device-map", '{"model.layers.1": "cuda:9"}', "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "cuda:9" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
