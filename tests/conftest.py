"""Shared fixtures: models are loaded once per session (tiny-random in ~1 s, SmolLM2 in ~2 s once cached)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
import torch

# Two cores: keep the BLAS thread pool at their size.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@dataclass(frozen=True)
class Ex:
    """A minimal example (the datasets module's Example has the same fields)."""

    question: str
    label: str
    id: str
    context: str | None = None


QUESTIONS = [
    Ex("Is 7 a prime number?", "yes", "q0"),
    Ex("Is the sum of 12 and 30 equal to 45?", "no", "q1"),
    Ex("Is Paris in France?", "yes", "q2"),
    Ex("Can a fish climb a tree by itself without any help from anything at all?", "no", "q3"),
    Ex("Is 100 greater than 99?", "yes", "q4"),
    Ex("Is the list [3, 1, 2] sorted in ascending order?", "no", "q5"),
]


@pytest.fixture(scope="session")
def tiny():
    from nasa_lens.models import load_model

    return load_model("tiny-random")


@pytest.fixture(scope="session")
def smol():
    from nasa_lens.models import load_model

    return load_model("smollm2-135m-instruct")


@pytest.fixture()
def questions():
    return list(QUESTIONS)
