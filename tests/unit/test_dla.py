"""DLA: the decomposition sums to the logit difference, one head's total and via_no recomputed from a
separate Hugging Face copy, padding invariance, adapters, the result object, OV copying by hand, bad input."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import QUESTIONS

from nasa_lens.copying import ov_copying
from nasa_lens.dla import SOURCES, DLAResult, dla_direction, dla_for_batch, scan_dla
from nasa_lens.prompts import PromptError, PromptFormat, build_batch

# ------------------------------------------------------------------------------------------ reference


def hf_head_dla(hf_model, batch, layer: int, head: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(total, via_yes, via_no)`` of one query head from a plain Hugging Face forward (eager attention):
    attention weights from ``output_attentions``, value vectors from a forward hook on ``v_proj``, the final
    norm's input from a hook on ``model.norm``; W_O, the final gain and W_U read from the HF weights.
    Independent of nasa_lens.dla (no bridge, no TransformerLens hook points)."""
    cfg = hf_model.config
    n_heads, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    d_head = cfg.hidden_size // n_heads
    g = head // (n_heads // n_kv)
    grabbed = {}
    attn = hf_model.model.layers[layer].self_attn
    h1 = attn.v_proj.register_forward_hook(lambda m, i, o: grabbed.__setitem__("v", o.detach()))
    h2 = hf_model.model.norm.register_forward_hook(lambda m, i, o: grabbed.__setitem__("resid", i[0].detach()))
    try:
        with torch.no_grad():
            out = hf_model(batch.input_ids, attention_mask=batch.attention_mask, output_attentions=True)
    finally:
        h1.remove()
        h2.remove()
    a = out.attentions[layer].double()  # [b, head, q, k]
    v = grabbed["v"].double().reshape(len(batch), batch.seq_len, n_kv, d_head)[:, :, g]  # [b, k, d_head]
    w_o = attn.o_proj.weight.detach().double()[:, head * d_head : (head + 1) * d_head]  # [d_model, d_head]
    w_u = hf_model.lm_head.weight.detach().double()
    u = hf_model.model.norm.weight.detach().double() * (w_u[batch.answer_yes_id] - w_u[batch.answer_no_id])
    totals, yes, no = [], [], []
    for r in range(len(batch)):
        ans = int(batch.pos_answer[r])
        x = grabbed["resid"][r, ans].double()
        scale = torch.sqrt((x * x).mean() + cfg.rms_norm_eps)
        per_k = (v[r] @ w_o.T @ u) / scale  # [k]: the value of each source position through W_O and u
        row = a[r, head, ans]
        totals.append(float(row @ per_k))
        yes.append(float(row[batch.pos_yes[r]] * per_k[batch.pos_yes[r]]))
        no.append(float(row[batch.pos_no[r]] * per_k[batch.pos_no[r]]))
        # the model's own logit difference, as a sanity anchor of the reference itself
        logits = out.logits[r, ans].double()
        assert float(logits[batch.answer_yes_id] - logits[batch.answer_no_id]) == pytest.approx(float((x / scale) @ u), abs=1e-4)
    return np.array(totals), np.array(yes), np.array(no)


# ------------------------------------------------------------------------------------------ tiny-random


def test_decomposition_sums_to_the_logit_difference_tiny(tiny):
    batch = build_batch(tiny, [QUESTIONS[0], QUESTIONS[3], QUESTIONS[5]])
    assert (batch.attention_mask == 0).any(), "the batch should be padded"
    heads, comps, diff = dla_for_batch(tiny, batch)
    assert heads.shape == (3, tiny.n_layers, tiny.n_heads, 3)
    assert set(comps) == {"embed", "mlp0", "mlp1"}  # Llama: no biases
    total = heads.sum(dim=(1, 2, 3)) + sum(comps.values())
    assert float((total - diff).abs().max()) < 1e-4
    assert float(heads.abs().max()) > 1e-3  # not trivially zero
    # the model's own answer logits, through the ordinary forward, agree with the diff DLA reports
    from nasa_lens.evaluate import answer_logits

    with torch.no_grad():
        pair = answer_logits(tiny, batch)
    torch.testing.assert_close(diff.float(), pair[:, 0] - pair[:, 1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("fmt_name", ["yes-no", "no-yes"])
def test_one_head_matches_hugging_face_tiny(tiny, tiny_hf, fmt_name):
    batch = build_batch(tiny, [QUESTIONS[0], QUESTIONS[3], QUESTIONS[2]], PromptFormat.named(fmt_name))
    heads, _, _ = dla_for_batch(tiny, batch)
    for layer, head in ((1, 3), (0, 1)):  # heads of both key/value groups (GQA: 4 query / 2 kv heads)
        total, yes, no = hf_head_dla(tiny_hf, batch, layer, head)
        assert np.abs(total).max() > 1e-4
        np.testing.assert_allclose(heads[:, layer, head].sum(-1).numpy(), total, atol=1e-4)
        np.testing.assert_allclose(heads[:, layer, head, 0].numpy(), yes, atol=1e-4)
        np.testing.assert_allclose(heads[:, layer, head, 1].numpy(), no, atol=1e-4)


def test_padding_invariance(tiny):
    alone = dla_for_batch(tiny, build_batch(tiny, [QUESTIONS[0]]))
    padded_batch = build_batch(tiny, [QUESTIONS[3], QUESTIONS[0]])
    assert int(padded_batch.attention_mask[1].sum()) < padded_batch.seq_len
    padded = dla_for_batch(tiny, padded_batch)
    torch.testing.assert_close(padded[0][1], alone[0][0], atol=1e-5, rtol=0)
    torch.testing.assert_close(padded[2][1], alone[2][0], atol=1e-5, rtol=0)


def test_direction_is_gain_times_unembedding_difference(tiny, tiny_hf):
    batch = build_batch(tiny, [QUESTIONS[0]])
    u, const = dla_direction(tiny, batch)
    w_u = tiny_hf.lm_head.weight.detach().double()
    ref = tiny_hf.model.norm.weight.detach().double() * (w_u[batch.answer_yes_id] - w_u[batch.answer_no_id])
    torch.testing.assert_close(u, ref)
    assert const == 0.0


def test_adapter_changes_dla_and_hooks_equal_merge(tiny):
    from nasa_lens.adapters import HeadAdapter

    batch = build_batch(tiny, QUESTIONS[:3])
    base, _, base_diff = dla_for_batch(tiny, batch)
    shape = {"n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "d_head": tiny.d_head, "d_model": 64}
    adapter = HeadAdapter([(1, 2)], [(1, 1)], shape=shape)
    with torch.no_grad():
        for p in adapter.params.values():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)) * 0.5)
    with adapter.applied(tiny):
        hooked, comps, diff = dla_for_batch(tiny, batch)
    adapter.merge(tiny)
    try:
        merged, _, _ = dla_for_batch(tiny, batch)
    finally:
        adapter.remove()
    # the adapter moves the trained head's pattern, so its DLA; layer 0's outputs are untouched, so its DLA
    # changes only by the frozen final-norm scale: one factor per example for all its heads and sources
    assert float((hooked[:, 1, 2] - base[:, 1, 2]).abs().max()) > 1e-4
    h0, b0 = hooked[:, 0].reshape(3, -1), base[:, 0].reshape(3, -1)
    factor = (h0 * b0).sum(-1, keepdim=True) / (b0 * b0).sum(-1, keepdim=True)
    torch.testing.assert_close(h0, factor * b0, atol=1e-7, rtol=0)
    assert float((factor - 1).abs().max()) > 1e-4
    torch.testing.assert_close(hooked, merged, atol=1e-5, rtol=0)
    assert float((hooked.sum(dim=(1, 2, 3)) + sum(comps.values()) - diff).abs().max()) < 1e-4
    assert float((diff - base_diff).abs().max()) > 0
    after, _, _ = dla_for_batch(tiny, batch)
    torch.testing.assert_close(after, base)  # removed: back to the base model


def test_scan_dla_result_table_and_roundtrip(tiny, tmp_path):
    result = scan_dla(tiny, QUESTIONS, batch_size=4, progress=False)
    assert result.n == 6 and result.ids == [q.id for q in QUESTIONS]
    assert list(result.labels) == [1, 0, 1, 0, 1, 0]
    assert np.abs(result.residual).max() < 1e-4
    table = result.table()
    assert list(table.columns) == ["layer", "head", "dla_mean", "dla_stderr", "via_yes", "via_no", "via_other", "n"]
    assert len(table) == tiny.n_layers * tiny.n_heads
    np.testing.assert_allclose(table.dla_mean, table.via_yes + table.via_no + table.via_other, atol=1e-12)
    total = result.heads.sum(-1)[:, 1, 3]
    row = table[(table.layer == 1) & (table["head"] == 3)].iloc[0]
    assert row.dla_mean == pytest.approx(total.mean())
    assert row.dla_stderr == pytest.approx(total.std(ddof=1) / np.sqrt(6))
    assert row.via_no == pytest.approx(result.heads[:, 1, 3, 1].mean())
    comp = result.component_table()
    assert list(comp.component) == ["embed", "mlp0", "mlp1", "heads", "residual", "logit_diff"]
    assert abs(comp.set_index("component").loc["residual", "dla_mean"]) < 1e-6
    long = result.to_dataframe()
    assert len(long) == 6 * 8 and list(long.columns[-4:]) == [*SOURCES, "total"]
    np.testing.assert_allclose(long.total, long.via_yes + long.via_no + long.via_other)
    result.save(tmp_path)
    back = DLAResult.load(tmp_path)
    np.testing.assert_array_equal(back.heads, result.heads)
    assert back.component_names == result.component_names and back.ids == result.ids
    pd.testing.assert_frame_equal(back.table(), table)
    assert back.top_heads(2) == result.top_heads(2)
    with pytest.raises(FileNotFoundError, match="not a DLA result"):
        DLAResult.load(tmp_path / "nothing")


def test_prompt_without_a_candidate_is_a_prompt_error(tiny):
    from nasa_lens.datasets import Example

    with pytest.raises(PromptError, match="does not contain the candidate"):
        scan_dla(tiny, [Example("Is it? Answer Yes.", "yes", "x0")], PromptFormat(template="{question}"), progress=False)


def test_ov_copying_by_hand(tiny, tiny_hf):
    c = ov_copying(tiny)
    assert c.copy_no.shape == (2, 4)
    layer, head = 1, 3
    probe = build_batch(tiny, ["Is it?"])
    t_yes, t_no = int(probe.input_ids[0, probe.pos_yes[0]]), int(probe.input_ids[0, probe.pos_no[0]])
    assert c.tokens == {"candidate_yes": t_yes, "candidate_no": t_no, "answer_yes": probe.answer_yes_id,
                        "answer_no": probe.answer_no_id}
    m = tiny_hf.model
    attn = m.layers[layer].self_attn
    d_head = tiny.d_head
    w_u = tiny_hf.lm_head.weight.detach().double()
    d = m.norm.weight.detach().double() * (w_u[probe.answer_no_id] - w_u[probe.answer_yes_id])
    for tok, sign, got in ((t_no, 1, c.copy_no), (t_yes, -1, c.copy_yes)):
        e = m.embed_tokens.weight[tok].detach().double()
        x = e / torch.sqrt((e * e).mean() + 1e-5) * m.layers[layer].input_layernorm.weight.detach().double()
        v = (attn.v_proj.weight.detach().double() @ x)[(head // 2) * d_head : (head // 2 + 1) * d_head]
        o = attn.o_proj.weight.detach().double()[:, head * d_head : (head + 1) * d_head] @ v
        assert got[layer, head] == pytest.approx(sign * float(o @ d), rel=1e-6, abs=1e-9)
    np.testing.assert_allclose(c.copying, (c.copy_no + c.copy_yes) / 2)


# ------------------------------------------------------------------------------------------ CLI


def _jsonl(tmp_path):
    from nasa_lens.datasets import write_jsonl

    path = tmp_path / "q.jsonl"
    write_jsonl(path, QUESTIONS)
    return path


def test_cli_dla_writes_the_tables_and_figures(tmp_path, capsys):
    from nasa_lens.cli import main

    out = tmp_path / "dla"
    assert main(["dla", "--model", "tiny-random", "--data", str(_jsonl(tmp_path)), "--limit", "4", "--no-png", "--out", str(out)]) == 0
    table = pd.read_csv(out / "dla.csv")
    assert list(table.columns) == ["layer", "head", "dla_mean", "dla_stderr", "via_yes", "via_no", "via_other", "n"]
    assert len(table) == 8 and (table.n == 4).all()
    np.testing.assert_allclose(table.dla_mean, table.via_yes + table.via_no + table.via_other, atol=1e-9)
    comps = pd.read_csv(out / "components.csv").set_index("component")
    assert abs(comps.loc["residual", "dla_mean"]) < 1e-4
    total = comps.loc[["embed", "mlp0", "mlp1", "heads"], "dla_mean"].sum()
    assert total == pytest.approx(comps.loc["logit_diff", "dla_mean"], abs=1e-4)
    assert {"copy_no", "copy_yes", "copying"} <= set(pd.read_csv(out / "copying.csv").columns)
    for fig in ("dla_via_no_heatmap", "dla_nas_vs_via_no", "dla_split_bars"):
        assert (out / f"{fig}.html").is_file()
    back = DLAResult.load(out)
    assert back.nas is not None and back.nas.shape == (4, 2, 4) and back.nas_positions == "after"
    assert "DLA of tiny-random" in capsys.readouterr().out


def test_cli_dla_limit_zero_is_an_error(tmp_path, capsys):
    from nasa_lens.cli import main
    from nasa_lens.jobs.common import DataConfig
    from nasa_lens.jobs.dla import DLAConfig
    from nasa_lens.vocab import NasaLensError

    assert main(["dla", "--model", "tiny-random", "--data", "arithmetic", "--limit", "0", "--out", str(tmp_path / "o")]) == 2
    assert "limit must be > 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    with pytest.raises(NasaLensError, match="limit must be > 0"):
        DataConfig(data="arithmetic", limit=0)
    with pytest.raises(NasaLensError, match="format must be one of"):
        DLAConfig(format="maybe")
