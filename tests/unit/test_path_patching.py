"""Path patching: every reader at once equals activation patching of the sender, single paths by hand,
layout (NaN before the sender, shared key/value heads), no effect without a difference, result round trip,
and the job end to end (``nasa-lens paths``)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import QUESTIONS

from nasa_lens.causal import CausalError, PairSet, patch_head_outputs, swap_pairs
from nasa_lens.causal.paths import PathPatchingResult, _path_hooks, all_paths_forward, path_patch, sender_delta
from nasa_lens.prompts import build_batch


@pytest.fixture(scope="module")
def pairs():
    return swap_pairs(QUESTIONS[:4])  # padded batches of 3 + 1: the mask is exercised


@pytest.mark.parametrize("sender", [(0, 1), (0, 3), (1, 2)])
def test_all_readers_at_once_equal_activation_patching(tiny, pairs, sender):
    act = patch_head_outputs(tiny, pairs, heads=[sender], batch_size=3, progress=False)
    got = all_paths_forward(tiny, pairs, sender, batch_size=3)
    want = act.patched[:, sender[0], sender[1]]
    assert np.abs(want - act.corrupted).max() > 1e-4  # the sender matters at all
    np.testing.assert_allclose(got, want, atol=2e-6)


def test_q_path_by_hand(tiny, pairs):
    """The q path of sender 0.1 -> receiver 1.2 against a forward that replaces head 1.2's query by one
    computed by hand from the corrupted residual plus the sender's delta."""
    res = path_patch(tiny, pairs, [(0, 1)], [(1, 2)], vias=("q",), direct=False, batch_size=4, progress=False)
    cb = build_batch(tiny, pairs.clean, pairs.clean_fmt)
    xb = build_batch(tiny, pairs.corrupted, pairs.corrupted_fmt)
    bridge = tiny.bridge
    with torch.no_grad():
        _, cc = bridge.run_with_cache(cb.input_ids, **cb.forward_kwargs())
        _, xc = bridge.run_with_cache(xb.input_ids, **xb.forward_kwargs())
        d_head = tiny.d_head
        w_o = bridge.blocks[0].attn.o.original_component.weight[:, d_head : 2 * d_head]
        delta = (cc["blocks.0.attn.hook_z"][:, :, 1] - xc["blocks.0.attn.hook_z"][:, :, 1]) @ w_o.T
        resid = xc["blocks.1.hook_resid_pre"] + delta
        rms = resid / torch.sqrt((resid * resid).mean(-1, keepdim=True) + 1e-5)
        x = rms * bridge.blocks[1].ln1.original_component.weight
        q = x @ bridge.blocks[1].attn.q.original_component.weight.T
        q2 = q.reshape(*q.shape[:2], 4, d_head)[:, :, 2]

        def set_q(act, hook=None):
            act = act.clone()
            act[:, :, 2] = q2
            return act

        logits = bridge.run_with_hooks(xb.input_ids, fwd_hooks=[("blocks.1.attn.hook_q", set_q)], **xb.forward_kwargs())
    want = (logits[:, -1, xb.answer_yes_id] - logits[:, -1, xb.answer_no_id]).double().numpy()
    np.testing.assert_allclose(res.patched[:, 0, 0, 0], want, atol=2e-6)
    torch.testing.assert_close(delta, sender_delta(tiny, cc["blocks.0.attn.hook_z"], xc["blocks.0.attn.hook_z"], 0, 1))


def test_layout_and_shared_key_value_heads(tiny, pairs):
    res = path_patch(tiny, pairs, [(0, 1), (1, 0)], [(1, 0), (1, 1), (1, 3)], batch_size=4, progress=False)
    assert res.patched.shape == (4, 2, 3, 3) and res.direct.shape == (4, 2)
    assert np.isnan(res.patched[:, 1]).all()  # nothing is after sender 1.0 except the logits
    assert np.isfinite(res.direct).all()
    # 1.0 and 1.1 read key/value head 0: their k and v paths are one forward; q paths differ
    np.testing.assert_array_equal(res.patched[:, 0, 0, 1:], res.patched[:, 0, 1, 1:])
    assert not np.allclose(res.patched[:, 0, 0, 0], res.patched[:, 0, 1, 0])
    frame = res.to_dataframe()
    assert set(frame.via) == {"q", "k", "v", "direct"}
    assert len(frame) == 3 * 3 + 2  # 0.1 -> 1.0/1.1/1.3 via q/k/v, plus two direct rows
    m = res.matrix("k")
    assert list(m.index) == ["0.1", "1.0"] and list(m.columns) == ["1.0", "1.1", "1.3"]
    row = frame[(frame.sender == "0.1") & (frame.receiver == "1.3") & (frame.via == "v")].iloc[0]
    assert row.normalized == pytest.approx((res.patched[:, 0, 2, 2].mean() - res.corrupted.mean()) / res.gap)


def test_a_receiver_after_no_sender_is_refused(tiny, pairs):
    """Receiver 0.2 is after neither sender 0.1 nor 1.0: its paths could only be NaN (issue #23, item 1)."""
    with pytest.raises(CausalError, match="receiver 0.2 is not after any sender"):
        path_patch(tiny, pairs, [(0, 1), (1, 0)], [(0, 2), (1, 0)], batch_size=4, progress=False)


def test_no_difference_no_effect(tiny):
    same = PairSet(list(QUESTIONS[:2]), list(QUESTIONS[:2]), swap_pairs(QUESTIONS[:1]).clean_fmt,
                   swap_pairs(QUESTIONS[:1]).clean_fmt, "same")
    res = path_patch(tiny, same, [(0, 0)], [(1, 1)], batch_size=2, progress=False)
    np.testing.assert_allclose(res.patched[:, 0, 0], res.corrupted[:, None].repeat(3, 1), atol=1e-6)
    np.testing.assert_allclose(res.direct[:, 0], res.corrupted, atol=1e-6)


def test_roundtrip_and_bad_input(tiny, pairs, tmp_path):
    res = path_patch(tiny, pairs, [(0, 2)], [(1, 3)], vias=("v",), batch_size=4, progress=False)
    res.save(tmp_path)
    back = PathPatchingResult.load(tmp_path)
    np.testing.assert_array_equal(back.patched, res.patched)
    assert back.senders == [(0, 2)] and back.receivers == [(1, 3)] and back.vias == ["v"]
    pd.testing.assert_frame_equal(back.to_dataframe(), res.to_dataframe())
    with pytest.raises(CausalError, match="unknown path input"):
        path_patch(tiny, pairs, [(0, 2)], vias=("x",))
    with pytest.raises(CausalError, match="at least one sender"):
        path_patch(tiny, pairs, [])
    with pytest.raises(ValueError, match="unknown path target"):
        _path_hooks(tiny, torch.zeros(1), [("mlp2", 0, 0)])


def test_cli_paths(tmp_path, capsys):
    from nasa_lens.cli import main
    from nasa_lens.datasets import write_jsonl
    from nasa_lens.jobs.path_patching import PathsConfig
    from nasa_lens.vocab import NasaLensError

    data = tmp_path / "q.jsonl"
    write_jsonl(data, QUESTIONS)
    out = tmp_path / "paths"
    argv = ["paths", "--model", "tiny-random", "--data", str(data), "--limit", "3", "--senders", "0.1",
            "--receivers", "1.2,1.3", "--via", "q,v", "--no-png", "--out", str(out)]
    assert main(argv) == 0
    res = PathPatchingResult.load(out)
    assert res.senders == [(0, 1)] and res.receivers == [(1, 2), (1, 3)] and res.vias == ["q", "v"] and res.n == 3
    frame = pd.read_csv(out / "paths.csv")
    assert len(frame) == 2 * 2 + 1 and (out / "paths_heatmap_q.html").is_file()
    assert main([*argv[:-2], "--via", "x", "--out", str(tmp_path / "bad")]) == 2
    assert "via must list" in capsys.readouterr().err
    with pytest.raises(NasaLensError, match="via must list"):
        PathsConfig(via="q,x")
