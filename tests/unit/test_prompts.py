"""Prompts: candidate and answer positions, padding, formats, and the errors for bad templates."""
from __future__ import annotations

import pytest

from nasa_lens.datasets import Example
from nasa_lens.prompts import PromptError, PromptFormat, answer_token_ids, build_batch, iter_batches, render_prompt


def _decode(model, batch, row, col):
    return model.tokenizer.decode([int(batch.input_ids[row, col])])


def test_default_prompt_is_chat_wrapped(tiny):
    text = render_prompt(tiny, "Is 7 prime?")
    assert text.endswith("<|im_start|>user\nIs 7 prime?\nAnswer with Yes or No.<|im_end|>\n<|im_start|>assistant\n")


def test_candidate_positions_point_at_instruction_tokens(tiny, questions):
    batch = build_batch(tiny, questions)
    assert batch.input_ids.shape[0] == len(questions)
    for i in range(len(questions)):
        assert _decode(tiny, batch, i, batch.pos_yes[i]) == " Yes"
        assert _decode(tiny, batch, i, batch.pos_no[i]) == " No"
        # "Answer with Yes or No": the negative candidate is two tokens after the positive one
        assert int(batch.pos_no[i] - batch.pos_yes[i]) == 2
        assert int(batch.pos_answer[i]) == batch.seq_len - 1
        assert batch.attention_mask[i, -1] == 1
    # answer tokens start the assistant turn: no leading space, other ids than the instruction's
    yes_id, no_id = answer_token_ids(tiny)
    assert tiny.tokenizer.decode([yes_id]) == "Yes" and tiny.tokenizer.decode([no_id]) == "No"
    assert yes_id != int(batch.input_ids[0, batch.pos_yes[0]])
    assert batch.labels.tolist() == [1, 0, 1, 0, 1, 0]


def test_left_padding_and_mask(tiny, questions):
    batch = build_batch(tiny, questions)
    lengths = batch.attention_mask.sum(1)
    assert lengths.min() < lengths.max()  # the questions differ in length
    for i, n in enumerate(lengths.tolist()):
        assert batch.attention_mask[i, : batch.seq_len - n].sum() == 0
        assert batch.attention_mask[i, batch.seq_len - n :].all()


@pytest.mark.parametrize(
    ("fmt", "first", "second"),
    [(PromptFormat.named("no-yes"), " No", " Yes"), (PromptFormat.named("true-false"), " True", " False"), (PromptFormat.named("false-true"), " False", " True")],
)
def test_formats_reorder_and_rename_candidates(tiny, fmt, first, second):
    batch = build_batch(tiny, ["Is 7 prime?"], fmt)
    lo, hi = sorted([int(batch.pos_yes[0]), int(batch.pos_no[0])])
    assert _decode(tiny, batch, 0, lo) == first and _decode(tiny, batch, 0, hi) == second
    assert _decode(tiny, batch, 0, batch.pos_yes[0]).strip() == fmt.positive
    assert f"Answer with {first.strip()} or {second.strip()}." in batch.texts[0]


def test_literal_instruction_in_question(tiny):
    fmt = PromptFormat(template="{question}")
    batch = build_batch(tiny, ["Yes, I know. Is 7 prime? Answer with Yes or No."], fmt)
    # the LAST occurrence of each candidate is the instruction's
    assert int(batch.pos_yes[0]) > 3
    assert _decode(tiny, batch, 0, batch.pos_yes[0]) == " Yes"


def test_context_goes_before_question(tiny):
    text = render_prompt(tiny, Example("Is it blue?", "yes", "c", context="The sky is blue."))
    assert "The sky is blue.\n\nIs it blue?\nAnswer with Yes or No." in text


def test_plain_prompt_without_chat_template(tiny):
    fmt = PromptFormat(chat=False)
    batch = build_batch(tiny, ["Is 7 prime?"], fmt)
    assert batch.texts[0] == "Is 7 prime?\nAnswer with Yes or No.\nAnswer:"
    assert tiny.tokenizer.decode([batch.answer_yes_id]) == " Yes"


def test_bad_templates_and_candidates_have_clear_errors(tiny):
    with pytest.raises(PromptError, match="has no \\{question\\} field"):
        PromptFormat(template="Answer with {first} or {second}.")
    with pytest.raises(PromptError, match="lacks the candidate 'Yes'"):
        PromptFormat(template="{question}\nAnswer please.")
    with pytest.raises(PromptError, match="must name both"):
        PromptFormat(template="{question} {first}")
    with pytest.raises(PromptError, match="must differ"):
        PromptFormat(positive="Yes", negative="Yes")
    with pytest.raises(PromptError, match="example 'x0'.*does not contain the candidate 'No'"):
        build_batch(tiny, [Example("Is it? Answer Yes.", "yes", "x0")], PromptFormat(template="{question}"))
    with pytest.raises(PromptError, match="not one token"):
        build_batch(tiny, ["Is 7 prime?"], PromptFormat(positive="Absolutely", negative="No"))
    with pytest.raises(PromptError, match="unknown prompt format"):
        PromptFormat.named("maybe")
    with pytest.raises(PromptError, match="zero examples"):
        build_batch(tiny, [])


def test_iter_batches_covers_every_row_once(tiny, questions):
    seen = []
    for idx, batch in iter_batches(tiny, questions, batch_size=4):
        assert len(idx) == len(batch) <= 4
        assert batch.ids == [questions[i].id for i in idx]
        seen += idx
    assert sorted(seen) == list(range(len(questions)))
