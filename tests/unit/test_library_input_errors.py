"""Bad input at the library level: every bad input gets a NasaLensError naming the problem, before any
forward pass: candidate positions taken from the instruction wherever it stands, the context window, devices,
dataset files (gzip, binary, BOM, folders, permissions, lone surrogates), adapter.json fields, the modes of the
files written, empty samples. (The cases came from issue #15's hostile-input review.)"""
from __future__ import annotations

import gzip
import json
import os
import stat

import pytest
import torch

from nasa_lens.adapters import ADAPTER_FILE, ADAPTER_META_FILE, AdapterError, HeadAdapter, model_shape, load_adapter, save_adapter
from nasa_lens.datasets import DatasetError, Example, load_dataset, read_jsonl, write_jsonl
from nasa_lens.models import ModelLoadError, load_model
from nasa_lens.prompts import PromptError, PromptFormat, build_batch, iter_batches
from nasa_lens.vocab import NasaLensError


def _decode(model, batch, row, col):
    return model.tokenizer.decode([int(batch.input_ids[row, col])])


# -------------------------------------------------------------- candidate positions come from the instruction


@pytest.mark.parametrize(
    "question",
    ["Yes, I know: is 7 prime?", "Is the answer Yes or No?", "No. Yes. No? Yes!", "Is 7 prime?"],
)
def test_instruction_before_question_keeps_its_own_candidates(tiny, question):
    fmt = PromptFormat(template="Answer with Yes or No.\n{question}")
    batch = build_batch(tiny, [question], fmt)
    py, pn = int(batch.pos_yes[0]), int(batch.pos_no[0])
    assert _decode(tiny, batch, 0, py) == " Yes" and _decode(tiny, batch, 0, pn) == " No"
    # the instruction's "Answer with Yes or No": "with" right before Yes, "or" between them
    assert _decode(tiny, batch, 0, py - 1) == " with" and pn == py + 2
    # and the question comes after both candidates
    q_start = batch.texts[0].rindex(question)
    enc = tiny.tokenizer(batch.texts[0], add_special_tokens=False, return_offsets_mapping=True)
    shift = batch.seq_len - len(enc["input_ids"])
    assert enc["offset_mapping"][pn - shift][1] <= q_start


def test_instruction_after_question_ignores_candidate_words_in_the_question(tiny):
    fmt = PromptFormat(template="{question}\nReply Yes or No only.")
    batch = build_batch(tiny, ["Reply Yes or No only? Yes or No?"], fmt)
    py, pn = int(batch.pos_yes[0]), int(batch.pos_no[0])
    assert pn == py + 2 and _decode(tiny, batch, 0, pn + 1) == " only" and _decode(tiny, batch, 0, pn + 2) == "."


def test_template_whose_candidate_touches_the_question_is_refused_per_example(tiny):
    fmt = PromptFormat(template="{question}Yes or No")
    assert build_batch(tiny, ["Is 7 prime? "], fmt)  # a word boundary: fine
    with pytest.raises(PromptError, match=r"example '0': the instruction .* does not contain the candidate 'Yes' as a word"):
        build_batch(tiny, ["Is 7 prime"], fmt)  # "primeYes" is no word


# ----------------------------------------------------------------------------------------- the context window


def test_model_knows_its_context_window(tiny):
    assert tiny.n_ctx == 1024  # max_position_embeddings of the tiny Llama config


def test_prompt_longer_than_the_context_window_is_refused(tiny):
    long = Example("Is " + "very " * 1100 + "long?", "yes", "long-one")
    with pytest.raises(PromptError, match=r"example 'long-one': the prompt is 11\d\d tokens long, more than the 1024-token context window of model 'tiny-random'"):
        build_batch(tiny, [long], PromptFormat())
    from nasa_lens.prompts import check_prompts

    with pytest.raises(PromptError, match="long-one"):
        check_prompts(tiny, [Example("Is 7 prime?", "yes", "ok"), long])


def test_every_prompt_is_checked_before_the_first_batch(tiny, questions):
    long = Example("Is " + "very " * 1100 + "long?", "yes", "long-one")
    batches = iter_batches(tiny, [*questions, long], PromptFormat(), batch_size=1)
    with pytest.raises(PromptError, match="long-one"):
        next(batches)  # not after six single-example forwards


def test_evaluate_refuses_a_long_prompt_before_any_forward(tiny, questions, monkeypatch):
    from nasa_lens.evaluate import evaluate

    calls = []
    original = type(tiny.bridge).forward
    monkeypatch.setattr(type(tiny.bridge), "forward", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    long = Example("Is " + "very " * 1100 + "long?", "no", "long-one")
    with pytest.raises(PromptError, match="long-one"):
        evaluate(tiny, [*questions, long], PromptFormat(), batch_size=2)
    assert calls == []


# ---------------------------------------------------------------------------------------------------- devices


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("foo", r"invalid device 'foo'"),
        ("meta", r"device 'meta' holds no weights"),
        pytest.param(
            "cuda:7", r"device 'cuda:7' is not available",
            marks=pytest.mark.skipif(torch.cuda.device_count() > 7, reason="this machine has a cuda:7"),
        ),
    ],
)
def test_bad_or_missing_device_is_a_clear_error(device, message):
    with pytest.raises(ModelLoadError, match=message):
        load_model("tiny-random", device=device)


def test_device_is_honoured_for_built_in_models(monkeypatch):
    """The model lands on the device asked for (``meta`` stands in for a GPU this machine lacks)."""
    import nasa_lens.models as models

    monkeypatch.setattr(models, "check_device", lambda device: torch.device("meta"))
    model = load_model("tiny-random", device="meta")
    assert model.device.type == "meta"
    assert {p.device.type for p in model.bridge.parameters()} == {"meta"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_device_cuda_for_built_in_model():
    model = load_model("tiny-random", device="cuda")
    assert model.device.type == "cuda"
    batch = build_batch(model, ["Is 7 prime?"])
    assert batch.input_ids.device.type == "cuda"


# ---------------------------------------------------------------------------------------------- dataset files

LINES = [{"id": "a", "question": "Is 2 even?", "label": "yes"}, {"id": "b", "question": "Is 3 even?", "label": "no"}]


def _write_lines(path, records, opener=open):
    with opener(path, "wt", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return path


def test_gzip_jsonl_is_read(tmp_path):
    plain = read_jsonl(_write_lines(tmp_path / "d.jsonl", LINES))
    assert read_jsonl(_write_lines(tmp_path / "d.jsonl.gz", LINES, gzip.open)) == plain
    # gzip content under a .jsonl name: recognised by its bytes, not its name
    assert read_jsonl(_write_lines(tmp_path / "z.jsonl", LINES, gzip.open)) == plain
    ds = load_dataset(str(tmp_path / "d.jsonl.gz"))
    assert ds.name == "d" and len(ds) == 2


def test_truncated_gzip_names_the_file(tmp_path):
    data = gzip.compress(b"".join(json.dumps(r).encode() + b"\n" for r in LINES * 50))
    (tmp_path / "t.jsonl.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=rf"dataset file {tmp_path / 't.jsonl.gz'} is a corrupt or truncated gzip file"):
        read_jsonl(tmp_path / "t.jsonl.gz")


def test_binary_file_names_file_and_line(tmp_path):
    path = tmp_path / "bin.jsonl"
    path.write_bytes(json.dumps(LINES[0]).encode() + b"\n\xff\xfe binary\n")
    with pytest.raises(DatasetError, match=rf"{path}:2: not UTF-8 text \(byte 0xff at column 1\); is the file compressed or binary"):
        read_jsonl(path)


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(LINES[0]).encode() + b"\n")
    assert [e.id for e in read_jsonl(path)] == ["a"]


def test_directory_is_not_reported_as_missing(tmp_path):
    with pytest.raises(DatasetError, match=rf"dataset path {tmp_path} is a folder, not a JSONL file"):
        read_jsonl(tmp_path)
    with pytest.raises(DatasetError, match="is a folder"):
        load_dataset(str(tmp_path))


def test_unreadable_file_names_the_file(tmp_path, monkeypatch):
    import nasa_lens.datasets.core as core

    path = _write_lines(tmp_path / "locked.jsonl", LINES)

    def denied(file, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(core, "open", denied, raising=False)
    with pytest.raises(DatasetError, match=rf"cannot read dataset file {path}: Permission denied"):
        read_jsonl(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files of any mode")
def test_unreadable_file_by_mode(tmp_path):
    path = _write_lines(tmp_path / "locked.jsonl", LINES)
    path.chmod(0)
    with pytest.raises(DatasetError, match=rf"cannot read dataset file {path}"):
        read_jsonl(path)


def test_lone_surrogate_names_file_line_and_example(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(LINES[0]) + "\n" + '{"id": "q7", "question": "Is \\ud800 odd?", "label": "no"}\n')
    with pytest.raises(DatasetError, match=rf"{path}:2: example 'q7': question is not valid Unicode: lone surrogate \\ud800 at character 3"):
        read_jsonl(path)
    with pytest.raises(DatasetError, match="example id is not valid Unicode"):
        Example("Is 2 even?", "yes", "bad\udfff")


def test_lone_surrogate_in_a_plain_prompt_names_the_example(tiny):
    with pytest.raises(PromptError, match=r"example '1': the text is not valid Unicode"):
        build_batch(tiny, ["Is 7 prime?", "Is \ud800 odd?"])  # plain strings are numbered


# ------------------------------------------------------------------------- adapter.json fields and file modes


@pytest.fixture()
def adapter_dir(tiny, tmp_path):
    adapter = HeadAdapter([(0, 1)], [(0, 0)], shape=model_shape(tiny), base_model=tiny.name)
    save_adapter(tmp_path, adapter, tiny)
    return tmp_path


def _edit(folder, **changes):
    meta = json.loads((folder / ADAPTER_META_FILE).read_text())
    meta.update(changes)
    (folder / ADAPTER_META_FILE).write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"heads": [0, 1]}, r"field 'heads' must be a list of \"LAYER.HEAD\" strings"),
        ({"heads": "0.1"}, r"field 'heads' must be a list"),
        ({"heads": ["zero.one"]}, r"field 'heads': bad head 'zero.one'"),
        ({"key_groups": [[0, 0]]}, r"field 'key_groups' must be a list"),
        ({"shape": [2, 4, 2, 16, 64]}, r"field 'shape' must be an object with the integer fields n_layers"),
        ({"shape": {"n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "d_head": 16}}, r"field 'shape' lacks 'd_model'"),
        ({"shape": {"n_layers": "two", "n_heads": 4, "n_kv_heads": 2, "d_head": 16, "d_model": 64}}, r"field 'shape.n_layers' must be a positive integer, got \"two\""),
        ({"shape": {"n_layers": 2.5, "n_heads": 4, "n_kv_heads": 2, "d_head": 16, "d_model": 64}}, r"field 'shape.n_layers' must be a positive integer, got 2.5"),
        ({"rank": "full"}, r"field 'rank' must be a positive integer or null"),
        ({"base_model": 3}, r"field 'base_model' must be a non-empty string"),
        ({"tensor_sha256": None}, r"field 'tensor_sha256' must be a non-empty string"),
        ({"heads": [], "key_groups": []}, r"an adapter needs at least one head"),
    ],
)
def test_malformed_adapter_json_names_file_and_field(tiny, adapter_dir, changes, message):
    _edit(adapter_dir, **changes)
    with pytest.raises(AdapterError, match=message) as info:
        load_adapter(tiny, adapter_dir, check_weights=False)
    assert str(adapter_dir / ADAPTER_META_FILE) in str(info.value)


def test_missing_adapter_is_input_error(tiny, tmp_path):
    with pytest.raises(NasaLensError, match="no adapter at") as info:
        load_adapter(tiny, tmp_path / "nowhere")
    assert isinstance(info.value, (NasaLensError, FileNotFoundError))
    assert isinstance(info.value, FileNotFoundError)


def test_adapter_files_follow_the_umask(adapter_dir):
    umask = os.umask(0)
    os.umask(umask)
    want = 0o666 & ~umask
    assert stat.S_IMODE((adapter_dir / ADAPTER_META_FILE).stat().st_mode) == want
    assert stat.S_IMODE((adapter_dir / ADAPTER_FILE).stat().st_mode) == want


def test_jsonl_written_follows_the_umask(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    path = write_jsonl(tmp_path / "x.jsonl", read_jsonl(_write_lines(tmp_path / "d.jsonl", LINES)))
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


# ---------------------------------------------------------------------------------------------- empty samples


def test_empty_sample_is_refused_after_split_and_sample(tmp_path):
    with pytest.raises(DatasetError, match=r"dataset 'arithmetic': the sample is empty \(limit 0\)"):
        load_dataset("arithmetic", limit=0)
    # two examples whose ids both hash into the train split: the test split is empty
    records = [{"id": i, "question": f"Is {i} even?", "label": "yes" if i % 2 == 0 else "no"} for i in range(40)]
    from nasa_lens.datasets.core import is_test

    train_only = [r for r in records if not is_test(str(r["id"]), 0.3)][:2]
    path = _write_lines(tmp_path / "small.jsonl", train_only)
    assert len(load_dataset(str(path), split="train")) == 2
    with pytest.raises(DatasetError, match=r"dataset 'small': its 'test' split is empty \(none of its 2 examples falls in it"):
        load_dataset(str(path), split="test")
