"""General ability, the check that a de-biasing fix leaves the model able to do other things: the
language-model loss on neutral text (:func:`lm_loss` on :data:`NEUTRAL_TEXT`) and next-token arithmetic
(:func:`arithmetic_accuracy` on :func:`arithmetic_items`). Both run with whatever adapters or hooks are attached."""
from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from nasa_lens.models import LoadedModel

__all__ = ["NEUTRAL_TEXT", "lm_loss", "arithmetic_items", "arithmetic_prompt", "arithmetic_accuracy", "general_ability"]

NEUTRAL_TEXT: tuple[str, ...] = (
    "The library opens at nine in the morning and closes at six in the evening.",
    "Rain fell steadily over the valley for most of the afternoon.",
    "She placed the blue cup on the table next to the window.",
    "The train to the coast leaves from the second platform every hour.",
    "Bread is usually made from flour, water, salt and yeast.",
    "A group of children walked slowly along the river path after school.",
    "The museum has a small collection of old maps and wooden tools.",
    "He wrote a short letter to his aunt and posted it on the way to work.",
    "In spring the park is full of tulips, daffodils and young trees.",
    "The recipe asks for two eggs, a cup of milk and a spoon of sugar.",
    "Our neighbours painted their front door a bright shade of green.",
    "The meeting was moved from Tuesday to Thursday at the same time.",
    "Most birds in the garden are sparrows, robins and the occasional crow.",
    "The old bridge across the canal was repaired last summer.",
    "She keeps her notes in a thick notebook with a red cover.",
    "A light wind moved the curtains while the kettle was boiling.",
    "The shop on the corner sells newspapers, fruit and fresh flowers.",
    "They planted tomatoes and beans along the south wall of the house.",
    "The teacher asked the class to read the first chapter before Monday.",
    "At night the town is quiet except for the sound of the distant sea.",
)
"""Twenty neutral English sentences (our own text) for the language-model-loss check of :func:`lm_loss`."""


def lm_loss(model: LoadedModel, texts: Sequence[str] = NEUTRAL_TEXT, *, batch_size: int = 8) -> np.ndarray:
    """Per-text mean next-token negative log-likelihood (nats/token) of ``texts`` (with attached adapters)."""
    tok = model.tokenizer
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start : start + batch_size])
            enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=True)
            ids, mask = enc["input_ids"].to(model.device), enc["attention_mask"].to(model.device)
            logits = model.bridge(ids, attention_mask=mask).float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
            m = mask[:, 1:].float() * mask[:, :-1].float()
            out.extend(((-logp * m).sum(1) / m.sum(1)).cpu().tolist())
    return np.asarray(out)


def arithmetic_items(n: int = 40, seed: int = 0) -> list[tuple[str, int]]:
    """``n`` deterministic one-digit-answer questions ``("What is 3 + 4?", 7)``: sums and differences of
    one-digit numbers with an answer in 0..9 (so every candidate answer is one token)."""
    rng = random.Random(seed)
    pool = [(f"What is {a} + {b}?", a + b) for a in range(10) for b in range(10) if a + b <= 9]
    pool += [(f"What is {a} - {b}?", a - b) for a in range(10) for b in range(10) if a >= b]
    rng.shuffle(pool)
    return pool[:n]


def arithmetic_prompt(model: LoadedModel, question: str) -> tuple[str, str]:
    """The prompt and the prefix of the digit tokens (chat: reply starts fresh; plain: after ``Answer:``)."""
    user = f"{question} Reply with the number only."
    if model.chat:
        text = model.tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)
        return text, ""
    return f"{user}\nAnswer:", " "


def arithmetic_accuracy(model: LoadedModel, items: Sequence[tuple[str, int]] | None = None, *, batch_size: int = 16) -> np.ndarray:
    """Per item 1/0: is the right digit the highest-logit of the ten digit tokens at the next position?

    Our general-ability check (not yes/no): chance is 0.1."""
    items = list(items if items is not None else arithmetic_items())
    tok = model.tokenizer
    prefix = arithmetic_prompt(model, items[0][0])[1]
    digit_ids = []
    for d in range(10):
        ids = tok(f"{prefix}{d}", add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"digit {prefix}{d!s} is not one token for {model.name!r}: {ids}")
        digit_ids.append(ids[0])
    digit_t = torch.tensor(digit_ids, device=model.device)
    correct = []
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            texts = [arithmetic_prompt(model, q)[0] for q, _ in chunk]
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=not model.chat)
            logits = model.bridge(enc["input_ids"].to(model.device), attention_mask=enc["attention_mask"].to(model.device))
            pick = logits[:, -1, digit_t].argmax(-1).cpu()
            correct.extend((pick == torch.tensor([a for _, a in chunk])).int().tolist())
    return np.asarray(correct)


def general_ability(model: LoadedModel) -> dict[str, np.ndarray]:
    """``{"lm_loss": per-text NLL, "arith_accuracy": per-item 0/1}`` with whatever adapters are attached."""
    return {"lm_loss": lm_loss(model), "arith_accuracy": arithmetic_accuracy(model)}
