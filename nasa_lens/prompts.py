"""Prompts: examples + a :class:`PromptFormat` -> a left-padded :class:`PromptBatch` with positions.

One binary-decision prompt is a question plus an instruction that names the two candidates, by default
``"{question}\\nAnswer with Yes or No."``, wrapped in the model's chat template with the generation prompt
(plain ``"...\\nAnswer:"`` text when the tokenizer has no chat template). For every row the batch records

* ``pos_yes`` / ``pos_no``: the token positions of the two candidates *inside the instruction*
  (for SmolLM2 the tokens `` Yes`` / `` No`` with a leading space);
* ``pos_answer``: the last prompt position, where the decision is read from the two *answer tokens*
  (``Yes`` / ``No`` as they start the assistant turn: other ids than the instruction's tokens).

Every later stage reads positions from here and nowhere else. Batches are left-padded, so the last prompt
token is the last column for every row; candidate positions are per row.
"""
from __future__ import annotations

from nasa_lens.vocab import FORMATS, NasaLensError, check_format

import re
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Int
from torch import Tensor

if TYPE_CHECKING:
    from nasa_lens.datasets import Example
    from nasa_lens.models import LoadedModel

__all__ = [
    "PromptError", "PromptFormat", "PromptBatch", "batch_plan", "build_batch", "by_batch_plan", "iter_batches", "render_prompt", "check_prompts",
    "encode_prompts", "context_length",
]


class PromptError(NasaLensError, ValueError):
    """A template or example cannot make a valid binary-decision prompt; the message says why."""


@dataclass(frozen=True)
class PromptFormat:
    """How a question becomes a prompt.

    Attributes:
        positive: the candidate that means "yes" (``"Yes"``, ``"True"``...).
        negative: the candidate that means "no".
        negative_first: name the negative candidate first in the instruction ("No or Yes").
        template: the user message; ``{question}`` is the question (with its context before it, if
            any), ``{first}`` / ``{second}`` the candidates in instruction order. A template without
            ``{first}`` / ``{second}`` must contain both candidate words literally (the last occurrence
            of each is used). ``template="{question}"`` lets a raw prompt carry its own instruction: the
            question text must then contain both candidate words.
        chat: use the tokenizer's chat template (``None``: when it has one).
        system: a system message for the chat template (``None``: the template's default).
        plain_suffix: appended after the user message when there is no chat template.
    """

    positive: str = "Yes"
    negative: str = "No"
    negative_first: bool = False
    template: str = "{question}\nAnswer with {first} or {second}."
    chat: bool | None = None
    system: str | None = None
    plain_suffix: str = "\nAnswer:"

    def __post_init__(self) -> None:
        if not self.positive.strip() or not self.negative.strip():
            raise PromptError("candidates must be non-empty words")
        if self.positive.strip() == self.negative.strip():
            raise PromptError(f"the two candidates must differ, got {self.positive!r} twice")
        fields = {f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None}
        if "question" not in fields:
            raise PromptError(f"template {self.template!r} has no {{question}} field")
        unknown = fields - {"question", "first", "second"}
        if unknown:
            raise PromptError(f"template {self.template!r} has unknown fields {sorted(unknown)}")
        if ("first" in fields) != ("second" in fields):
            raise PromptError(f"template {self.template!r} must name both {{first}} and {{second}}, or neither")
        if "first" not in fields and self.template.strip() != "{question}":
            for word in (self.positive, self.negative):
                if not _word_re(word).search(self.template):
                    raise PromptError(
                        f"template {self.template!r} lacks the candidate {word!r}: add {{first}} and {{second}} "
                        "fields or write both candidate words in it"
                    )

    @property
    def first(self) -> str:
        return self.negative if self.negative_first else self.positive

    @property
    def second(self) -> str:
        return self.positive if self.negative_first else self.negative

    @property
    def label(self) -> str:
        """A short name: ``"Yes/No"``, ``"No/Yes"``, ``"True/False"``."""
        return f"{self.first}/{self.second}"

    def swapped(self) -> PromptFormat:
        """The same format with the candidate order reversed ("No or Yes")."""
        return replace(self, negative_first=not self.negative_first)

    def with_candidates(self, positive: str, negative: str) -> PromptFormat:
        return replace(self, positive=positive, negative=negative)

    @classmethod
    def of(cls, fmt: PromptFormat | str | None) -> PromptFormat:
        """``fmt`` as a format: None -> the default, a preset name -> :meth:`named`, a format unchanged."""
        if fmt is None:
            return cls()
        return cls.named(fmt) if isinstance(fmt, str) else fmt

    @classmethod
    def named(cls, name: str) -> PromptFormat:
        """Presets: ``"yes-no"`` (default), ``"no-yes"``, ``"true-false"``, ``"false-true"``."""
        yes_no, true_false = cls(), cls(positive="True", negative="False")
        presets = dict(zip(FORMATS, (yes_no, yes_no.swapped(), true_false, true_false.swapped()), strict=True))
        check_format(name, PromptError)
        return presets[name]


@dataclass
class PromptBatch:
    """A tokenized, left-padded batch with per-row positions.

    ``labels`` is 1 for gold "yes", 0 for gold "no", -1 when unknown.
    """

    input_ids: Int[Tensor, "example pos"]
    attention_mask: Int[Tensor, "example pos"]
    pos_yes: Int[Tensor, " example"]
    pos_no: Int[Tensor, " example"]
    pos_answer: Int[Tensor, " example"]
    answer_yes_id: int
    answer_no_id: int
    labels: Int[Tensor, " example"]
    ids: list[str]
    texts: list[str] = field(repr=False)
    format: PromptFormat = field(default_factory=PromptFormat)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.input_ids.shape[1])

    @property
    def pos_candidate_last(self) -> Int[Tensor, " example"]:
        """The later of the two candidate positions (NAS ``positions="after"`` starts after it)."""
        return torch.maximum(self.pos_yes, self.pos_no)

    def to(self, device: torch.device | str) -> PromptBatch:
        return replace(
            self,
            input_ids=self.input_ids.to(device),
            attention_mask=self.attention_mask.to(device),
            pos_yes=self.pos_yes.to(device),
            pos_no=self.pos_no.to(device),
            pos_answer=self.pos_answer.to(device),
            labels=self.labels.to(device),
        )

    def select(self, rows: Sequence[int] | Tensor) -> PromptBatch:
        """A sub-batch of the given rows (padding columns are kept)."""
        idx = torch.as_tensor(rows, dtype=torch.long)
        ids = [self.ids[i] for i in idx.tolist()]
        texts = [self.texts[i] for i in idx.tolist()]
        return replace(
            self,
            input_ids=self.input_ids[idx],
            attention_mask=self.attention_mask[idx],
            pos_yes=self.pos_yes[idx],
            pos_no=self.pos_no[idx],
            pos_answer=self.pos_answer[idx],
            labels=self.labels[idx],
            ids=ids,
            texts=texts,
        )

    def forward_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``bridge(input_ids, **kwargs)``."""
        return {"attention_mask": self.attention_mask}


def _word_re(word: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)" + re.escape(word.strip()) + r"(?!\w)")


def _user_message(question: str, fmt: PromptFormat) -> tuple[str, tuple[int, int], tuple[int, int]]:
    """Render the user message; return it with the char spans of the positive and negative candidate.

    The candidates are always taken from the instruction, i.e. the template's own text, wherever it stands
    relative to ``{question}``: from the ``{first}`` / ``{second}`` fields, else from the last occurrence of
    each candidate word inside the template's literal text (never inside the question, so a question that
    contains "Yes" cannot move the position). Only ``template="{question}"`` (a raw prompt carrying its own
    instruction) searches the question, taking the last occurrence of each word.
    """
    out: list[str] = []
    spans: dict[str, tuple[int, int]] = {}
    literal_spans: list[tuple[int, int]] = []
    for literal, fname, _spec, _conv in string.Formatter().parse(fmt.template):
        start = sum(len(s) for s in out)
        out.append(literal)
        if literal:
            literal_spans.append((start, start + len(literal)))
        if fname is None:
            continue
        value = {"question": question, "first": fmt.first, "second": fmt.second}[fname]
        start = sum(len(s) for s in out)
        out.append(value)
        if fname in ("first", "second"):
            spans[fname] = (start, start + len(value))
    text = "".join(out)
    if spans:
        pos_span = spans["second"] if fmt.negative_first else spans["first"]
        neg_span = spans["first"] if fmt.negative_first else spans["second"]
        return text, pos_span, neg_span
    raw = fmt.template.strip() == "{question}"
    found = []
    for word in (fmt.positive, fmt.negative):
        matches = [
            m for m in _word_re(word).finditer(text)
            if raw or any(lo <= m.start() and m.end() <= hi for lo, hi in literal_spans)
        ]
        if not matches:
            where = "the prompt" if raw else "the instruction (the template's own text)"
            raise PromptError(f"{where} does not contain the candidate {word!r} as a word: {text[-120:]!r}")
        found.append(matches[-1].span())
    return text, found[0], found[1]


def _use_chat(model: LoadedModel, fmt: PromptFormat) -> bool:
    if fmt.chat is None:
        return model.chat
    if fmt.chat and not model.chat:
        raise PromptError(f"model {model.name!r} has no chat template, but the format asks for chat=True")
    return fmt.chat


def render_prompt(model: LoadedModel, example: Example | str, fmt: PromptFormat | None = None) -> str:
    """The full prompt text for one example (chat template applied)."""
    fmt = fmt or PromptFormat()
    return _render(model, example, fmt)[0]


def _question_text(example: Example | str) -> str:
    if isinstance(example, str):
        return example
    if getattr(example, "context", None):
        return f"{example.context}\n\n{example.question}"
    return example.question


def _render(model: LoadedModel, example: Example | str, fmt: PromptFormat) -> tuple[str, tuple[int, int], tuple[int, int]]:
    user, pos_span, neg_span = _user_message(_question_text(example), fmt)
    if _use_chat(model, fmt):
        messages = ([{"role": "system", "content": fmt.system}] if fmt.system else []) + [
            {"role": "user", "content": user}
        ]
        text = model.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = user + fmt.plain_suffix
    offset = text.rfind(user)
    if offset < 0:
        raise PromptError("the chat template changed the user message; cannot locate the candidates")
    return text, (pos_span[0] + offset, pos_span[1] + offset), (neg_span[0] + offset, neg_span[1] + offset)


def _token_at(offsets: list[tuple[int, int]], span: tuple[int, int], word: str, ids: list[int], tok: Any) -> int:
    """The index of the single token that covers the char span of a candidate word."""
    start, end = span
    covering = [i for i, (s, e) in enumerate(offsets) if e > start and s < end and e > s]
    if len(covering) != 1:
        pieces = [tok.decode([ids[i]]) for i in covering]
        raise PromptError(f"candidate {word!r} is not one token in the instruction: it is split into {pieces}")
    i = covering[0]
    if tok.decode([ids[i]]).strip() != word.strip():
        raise PromptError(
            f"candidate {word!r} is not one token in the instruction: its token is {tok.decode([ids[i]])!r}"
        )
    return i


def answer_token_ids(model: LoadedModel, fmt: PromptFormat | None = None) -> tuple[int, int]:
    """The token ids of the positive and negative answers as they start the model's reply.

    With a chat template the reply starts a fresh line (``"Yes"``, no space); with plain prompts it follows
    ``"Answer:"`` (``" Yes"``). Each must be a single token.
    """
    fmt = fmt or PromptFormat()
    prefix = "" if _use_chat(model, fmt) else " "
    out = []
    for word in (fmt.positive, fmt.negative):
        ids = model.tokenizer(prefix + word.strip(), add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise PromptError(f"answer {prefix + word.strip()!r} is not one token for {model.name!r}: {ids}")
        out.append(int(ids[0]))
    return out[0], out[1]


def context_length(model: LoadedModel) -> int | None:
    """The model's context window in tokens (``n_ctx``), or ``None`` when unknown."""
    n = getattr(model, "n_ctx", None)
    return int(n) if n else None


@dataclass(frozen=True)
class _Encoded:
    ids: list[int]
    pos_yes: int
    pos_no: int
    text: str


def _encode(model: LoadedModel, ex: Example | str, k: int, fmt: PromptFormat, chat: bool, n_ctx: int | None) -> _Encoded:
    """Render and tokenize one example; every problem is a :class:`PromptError` naming the example."""
    tok = model.tokenizer
    ex_id = getattr(ex, "id", str(k))
    try:
        text, pspan, nspan = _render(model, ex, fmt)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise PromptError(
                f"the text is not valid Unicode: {exc.object[exc.start:exc.end]!r} at character {exc.start} "
                "(a lone surrogate?)"
            ) from None
        enc = tok(text, add_special_tokens=not chat, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        if n_ctx is not None and len(ids) > n_ctx:
            raise PromptError(
                f"the prompt is {len(ids)} tokens long, more than the {n_ctx}-token context window of "
                f"model {model.name!r}; shorten or drop this example"
            )
        offsets = [tuple(o) for o in enc["offset_mapping"]]
        py = _token_at(offsets, pspan, fmt.positive, ids, tok)
        pn = _token_at(offsets, nspan, fmt.negative, ids, tok)
    except PromptError as exc:
        raise PromptError(f"example {ex_id!r}: {exc}") from None
    return _Encoded(ids, py, pn, text)


def encode_prompts(model: LoadedModel, examples: Sequence[Example | str], fmt: PromptFormat | None = None) -> list[_Encoded]:
    """Render and tokenize every example, checking each against the model's context window: the check
    every caller runs before the first forward (:func:`iter_batches` does it for all its batches at once).

    Raises:
        PromptError: naming the first bad example: a prompt longer than the context window (its token
            length and the limit), text that is not valid Unicode, a candidate that is not one token.
    """
    fmt = fmt or PromptFormat()
    chat = _use_chat(model, fmt)
    n_ctx = context_length(model)
    return [_encode(model, ex, k, fmt, chat, n_ctx) for k, ex in enumerate(examples)]


def check_prompts(model: LoadedModel, examples: Sequence[Example | str], fmt: PromptFormat | None = None) -> None:
    """Raise :class:`PromptError` for the first example that cannot be a prompt for ``model`` (see
    :func:`encode_prompts`); call it before a loop that builds its batches one by one."""
    encode_prompts(model, examples, fmt)


def build_batch(model: LoadedModel, examples: Sequence[Example | str], fmt: PromptFormat | None = None) -> PromptBatch:
    """Tokenize ``examples`` into one left-padded batch with candidate and answer positions per row."""
    fmt = fmt or PromptFormat()
    if len(examples) == 0:
        raise PromptError("cannot build a batch from zero examples")
    answer_token_ids(model, fmt)  # a bad answer token is reported before any example
    return _assemble(model, examples, encode_prompts(model, examples, fmt), fmt)


def _assemble(model: LoadedModel, examples: Sequence[Example | str], encoded: Sequence[_Encoded], fmt: PromptFormat) -> PromptBatch:
    tok = model.tokenizer
    yes_id, no_id = answer_token_ids(model, fmt)
    rows = [e.ids for e in encoded]
    width = max(len(r) for r in rows)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    shift = []
    for i, r in enumerate(rows):
        s = width - len(r)
        input_ids[i, s:] = torch.tensor(r, dtype=torch.long)
        mask[i, s:] = 1
        shift.append(s)
    shift_t = torch.tensor(shift, dtype=torch.long)
    labels = torch.tensor([_label_int(ex) for ex in examples], dtype=torch.long)
    return PromptBatch(
        input_ids=input_ids,
        attention_mask=mask,
        pos_yes=torch.tensor([e.pos_yes for e in encoded], dtype=torch.long) + shift_t,
        pos_no=torch.tensor([e.pos_no for e in encoded], dtype=torch.long) + shift_t,
        pos_answer=torch.full((len(rows),), width - 1, dtype=torch.long),
        answer_yes_id=yes_id,
        answer_no_id=no_id,
        labels=labels,
        ids=[str(getattr(ex, "id", k)) for k, ex in enumerate(examples)],
        texts=[e.text for e in encoded],
        format=fmt,
    ).to(model.device)


def _label_int(ex: Any) -> int:
    label = getattr(ex, "label", None)
    return 1 if label == "yes" else 0 if label == "no" else -1


def iter_batches(
    model: LoadedModel,
    examples: Sequence[Example | str],
    fmt: PromptFormat | None = None,
    batch_size: int = 16,
    *,
    sort_by_length: bool = True,
) -> Iterator[tuple[list[int], PromptBatch]]:
    """Yield ``(row indices into examples, batch)``; with ``sort_by_length`` rows of similar length go
    together so padding stays small (callers scatter results back with the indices). The batches are
    :func:`batch_plan`'s."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    fmt = fmt or PromptFormat()
    if len(examples):
        answer_token_ids(model, fmt)
    # Every prompt is encoded (and checked against the context window) before the first batch is yielded,
    # so a bad example fails the run before any forward pass, not after the batches before it.
    encoded = encode_prompts(model, examples, fmt)
    for idx in batch_plan(examples, batch_size, sort_by_length=sort_by_length):
        yield idx, _assemble(model, [examples[i] for i in idx], [encoded[i] for i in idx], fmt)


def batch_plan(examples: Sequence[Example | str], batch_size: int = 16, *, sort_by_length: bool = True) -> list[list[int]]:
    """The row indices of every batch :func:`iter_batches` runs, in run order (rows sorted by question length,
    stable, then cut into ``batch_size`` chunks). Data-parallel runs deal these batches out whole, so a
    rank runs exactly the batches one process would."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = list(range(len(examples)))
    if sort_by_length:
        order.sort(key=lambda i: len(_question_text(examples[i])))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def by_batch_plan(arguments: dict[str, Any]) -> list[list[int]]:
    """The batch plan of a per-example function with ``examples`` and ``batch_size`` arguments (the
    ``groups`` of :func:`nasa_lens.parallel.over_examples`: ranks take whole batches)."""
    return batch_plan(arguments["examples"], arguments["batch_size"])
