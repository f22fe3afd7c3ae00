"""Property-based tests (hypothesis) of the input boundary (issue #15):

* the prompt builder: any question text, any template with the candidates anywhere (before, after or around
  the question; as ``{first}``/``{second}`` fields or literal words), tiny-random / SmolLM2 / Gemma tokenizers:
  the candidate positions decode to the *instruction's* candidates, and a batch equals its rows built one at a
  time (left padding aside);
* the JSONL loader: any bytes give a clean :class:`DatasetError` naming the file (and the line, for a line's
  problem), or examples that round-trip through :func:`write_jsonl`;
* head specs: any text gives a :class:`HeadSpecError` or valid, distinct heads in range;
* adapter metadata: any JSON in ``adapter.json`` gives an :class:`AdapterError` or a valid adapter.

Runs are derandomized (the same examples every run) so CI is reproducible; the real-tokenizer cases (SmolLM2,
Gemma) are in tests/integration/test_properties.py and keep their example counts small.
"""
from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from nasa_lens.adapters import ADAPTER_META_FILE, AdapterError, HeadAdapter, model_shape, load_adapter, save_adapter
from nasa_lens.datasets import DatasetError, Example, read_jsonl, write_jsonl
from nasa_lens.heads import HeadSpecError, parse_head, parse_heads
from nasa_lens.prompts import PromptError, PromptFormat, build_batch

FAST = settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------------------------------------ prompts

# Any text a user could paste as a question: every Unicode category except lone surrogates (refused with a
# clear error, tested in test_library_input_errors.py), including the candidate words, braces, newlines and special-token text.
QUESTION = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=80),
    st.lists(st.sampled_from(["Yes", "No", "True", "False", "yes", "{first}", "{}", "<|im_end|>", "\n", " ", "?", "Is", "7", "prime"]), min_size=1, max_size=12).map(" ".join),
).filter(lambda q: q.strip())

WORDS = st.lists(st.sampled_from(["Answer", "with", "Reply", "only", "Say", "either", "or", "please", "Decide:", "(", ")", "-"]), max_size=4).map(" ".join)
CANDIDATES = st.sampled_from([("Yes", "No"), ("True", "False")])


@st.composite
def templates(draw):
    """A template with the instruction before, after or around ``{question}``; candidates as fields or words."""
    positive, negative = draw(CANDIDATES)
    negative_first = draw(st.booleans())
    fields = draw(st.booleans())
    first, second = (negative, positive) if negative_first else (positive, negative)
    a, b = ("{first}", "{second}") if fields else (first, second)
    pre, mid, post = draw(WORDS), draw(WORDS), draw(st.sampled_from(["", ".", "?", "!", " now."]))
    instruction = f"{pre} {a} {mid} {b}{post}".strip()
    place = draw(st.sampled_from(["after", "before", "around"]))
    sep = draw(st.sampled_from(["\n", " ", "\n\n", ": "]))
    if place == "after":
        template = "{question}" + sep + instruction
    elif place == "before":
        template = instruction + sep + "{question}"
    else:  # one candidate before the question, the other after it
        template = f"{pre} {a}{sep}{{question}}{sep}{mid} {b}{post}".strip()
    return PromptFormat(positive=positive, negative=negative, negative_first=negative_first, template=template)


def _check_prompt_properties(model, question: str, fmt: PromptFormat) -> None:
    try:
        batch = build_batch(model, [Example(question, "yes", "q")], fmt)
    except PromptError as exc:
        # the only acceptable refusal: a candidate merged with a neighbouring character of the question
        assert "example 'q'" in str(exc)
        assert re.search(r"not one token|does not contain the candidate", str(exc)), exc
        event("refused: a candidate merged with the question")
        return
    event("built")
    tok = model.tokenizer
    for pos, word in ((batch.pos_yes[0], fmt.positive), (batch.pos_no[0], fmt.negative)):
        assert tok.decode([int(batch.input_ids[0, pos])]).strip() == word
    # the positions lie in the instruction, never inside the question
    text = batch.texts[0]
    prefix, suffix = (part.replace("{first}", fmt.first).replace("{second}", fmt.second) for part in fmt.template.split("{question}"))
    q_start = text.rindex(prefix + question + suffix) + len(prefix)
    q_end = q_start + len(question)
    enc = tok(text, add_special_tokens=not model.chat, return_offsets_mapping=True)
    shift = batch.seq_len - len(enc["input_ids"])
    for pos in (int(batch.pos_yes[0]), int(batch.pos_no[0])):
        s, e = enc["offset_mapping"][pos - shift]
        assert e <= q_start or s >= q_end, (text, s, e, q_start, q_end)


def _check_batched_equals_single(model, questions: list[str], fmt: PromptFormat) -> None:
    examples = [Example(q, "yes" if i % 2 else "no", f"q{i}") for i, q in enumerate(questions)]
    try:
        batch = build_batch(model, examples, fmt)
    except PromptError:
        with pytest.raises(PromptError):
            for ex in examples:
                build_batch(model, [ex], fmt)
        return
    for i, ex in enumerate(examples):
        one = build_batch(model, [ex], fmt)
        pad = batch.seq_len - one.seq_len
        assert torch.equal(batch.input_ids[i, pad:], one.input_ids[0])
        assert batch.attention_mask[i, :pad].sum() == 0 and batch.attention_mask[i, pad:].all()
        assert int(batch.pos_yes[i]) == int(one.pos_yes[0]) + pad
        assert int(batch.pos_no[i]) == int(one.pos_no[0]) + pad
        assert batch.texts[i] == one.texts[0] and batch.labels[i] == one.labels[0]


@FAST
@given(question=QUESTION, fmt=templates())
def test_prompt_positions_are_the_instructions_candidates_tiny(tiny, question, fmt):
    _check_prompt_properties(tiny, question, fmt)


@FAST
@given(questions=st.lists(QUESTION, min_size=1, max_size=4), fmt=templates())
def test_batched_equals_one_at_a_time_tiny(tiny, questions, fmt):
    _check_batched_equals_single(tiny, questions, fmt)


# ------------------------------------------------------------------------------------------------ JSONL

JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=12))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=6), c, max_size=3)), max_leaves=8)
RECORD = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.text(max_size=8), st.integers(), JSON_VALUES),
        "question": st.one_of(st.text(max_size=30), JSON_VALUES),
        "label": st.one_of(st.sampled_from(["yes", "no", "YES", " No ", True, False, "maybe"]), JSON_VALUES),
        "context": st.one_of(st.none(), st.text(max_size=20), JSON_VALUES),
        "group": st.one_of(st.none(), st.text(max_size=6), st.integers()),
        "extra": JSON_VALUES,
    },
)
LINE = st.one_of(
    RECORD.map(lambda r: json.dumps(r, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    RECORD.map(lambda r: json.dumps(r).encode()),  # \\uXXXX escapes: lone surrogates come through here
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=40),
    st.sampled_from([b"", b"   ", b"\r", b"\xef\xbb\xbf{}", b"\x1f\x8b\x08", b"[[[[[[[[[[", b"{" * 2000]),
)
VALID_RECORD = st.fixed_dictionaries(
    {
        "question": st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=30).filter(str.strip),
        "label": st.sampled_from(["yes", "no", "Yes", " NO ", True, False]),
    },
    optional={
        "id": st.one_of(st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=8), st.integers()),
        "context": st.one_of(st.none(), st.text(st.characters(exclude_categories=("Cs",)), max_size=20)),
        "group": st.one_of(st.none(), st.text("abc", min_size=1, max_size=3), st.integers(0, 3)),
        "extra": JSON_VALUES,
    },
)
VALID_LINE = VALID_RECORD.map(lambda r: json.dumps(r, ensure_ascii=False).encode())
CONTENT = st.one_of(
    st.binary(max_size=200),
    st.lists(LINE, max_size=6).map(b"\n".join),
    st.lists(VALID_LINE, min_size=1, max_size=6).map(lambda lines: b"\r\n".join(lines) + b"\n"),
    st.tuples(st.lists(VALID_LINE, max_size=4), LINE).map(lambda t: b"\n".join([*t[0], t[1]])),
)


@FAST
@given(content=CONTENT, name=st.sampled_from(["d.jsonl", "d.jsonl.gz", "d"]))
def test_jsonl_any_bytes_clean_error_or_round_trip(content, name):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(content)
        try:
            examples = read_jsonl(path)
        except DatasetError as exc:
            message = str(exc)
            assert str(path) in message and "\n" not in message.strip()
            if "gzip" not in message:
                assert re.match(rf"{re.escape(str(path))}:\d+: ", message), message
            event("refused")
            return
        event(f"read {min(len(examples), 2)}+ examples")
        again = read_jsonl(write_jsonl(Path(tmp) / "again.jsonl", examples))
        assert again == examples


# ------------------------------------------------------------------------------------------------ head specs

HEAD_TEXT = st.one_of(
    st.text(max_size=20),
    st.lists(st.tuples(st.integers(-2, 40), st.integers(-2, 12)), max_size=5).map(lambda hs: ",".join(f"{a}.{b}" for a, b in hs)),
    st.tuples(st.sampled_from(["top", "bottom", "random", "rand", ""]), st.text("0123456789-: x", max_size=8)).map(":".join),
)


@FAST
@given(spec=HEAD_TEXT, n_layers=st.integers(1, 30), n_heads=st.integers(1, 9), ranked=st.booleans())
def test_head_specs_clean_error_or_valid_heads(spec, n_layers, n_heads, ranked):
    ranking = np.random.default_rng(0).normal(size=(n_layers, n_heads)) if ranked else None
    try:
        heads = parse_heads(spec, n_layers, n_heads, ranking)
    except HeadSpecError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert heads and len(set(heads)) == len(heads)
    assert all(0 <= layer < n_layers and 0 <= h < n_heads for layer, h in heads)


@FAST
@given(text=st.text(max_size=12))
def test_single_head_clean_error_or_valid(text):
    try:
        layer, head = parse_head(text)
    except HeadSpecError:
        return
    assert layer >= 0 and head >= 0


# ------------------------------------------------------------------------------------------------ adapter.json

META_FIELDS = ["format", "version", "base_model", "base_weights_hash", "shape", "rank", "heads", "key_groups", "tensor_sha256", "tensor_file", "n_params"]


@pytest.fixture(scope="module")
def adapter_folder(tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("adapter")
    save_adapter(folder, HeadAdapter([(0, 1), (1, 3)], [(0, 0)], shape=model_shape(tiny), base_model=tiny.name, rank=2), tiny)
    return folder


@FAST
@given(
    edits=st.dictionaries(st.sampled_from(META_FIELDS), JSON_VALUES, max_size=3),
    shape_edits=st.dictionaries(st.sampled_from(["n_layers", "n_heads", "n_kv_heads", "d_head", "d_model", "x"]), JSON_VALUES, max_size=2),
    drop=st.lists(st.sampled_from(META_FIELDS), max_size=2),
    whole=st.one_of(st.none(), JSON_VALUES),
)
def test_adapter_meta_any_json_clean_error_or_valid(tiny, adapter_folder, edits, shape_edits, drop, whole):
    meta_file = adapter_folder / ADAPTER_META_FILE
    original = meta_file.read_text()
    meta = json.loads(original)
    meta["shape"].update(shape_edits)
    meta.update(edits)
    for key in drop:
        meta.pop(key, None)
    try:
        meta_file.write_text(json.dumps(meta if whole is None else whole))
        try:
            adapter = load_adapter(tiny, adapter_folder, mode="none")
        except AdapterError as exc:
            assert str(exc) and "\n" not in str(exc)
            return
        assert adapter.heads and all(0 <= layer < tiny.n_layers and 0 <= h < tiny.n_heads for layer, h in adapter.heads)
        assert adapter.shape == model_shape(tiny)
    finally:
        meta_file.write_text(original)
