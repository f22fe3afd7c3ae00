"""What every tier shares (tests/unit, tests/integration, tests/notebooks; each tier's own fixtures are in its
conftest.py): ``QUESTIONS``, the session's tiny-random (loaded once, ~1 s), ``questions``, and the hook that runs
a module's ``check_after_test`` after each of its tests."""
from __future__ import annotations

import os
import pytest
import torch

from nasa_lens.datasets import Example

# Two cores: keep the BLAS thread pool at their size.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


QUESTIONS = [
    Example("Is 7 a prime number?", "yes", "q0"),
    Example("Is the sum of 12 and 30 equal to 45?", "no", "q1"),
    Example("Is Paris in France?", "yes", "q2"),
    Example("Can a fish climb a tree by itself without any help from anything at all?", "no", "q3"),
    Example("Is 100 greater than 99?", "yes", "q4"),
    Example("Is the list [3, 1, 2] sorted in ascending order?", "no", "q5"),
]


@pytest.fixture(scope="session")
def tiny():
    from nasa_lens.models import load_model

    return load_model("tiny-random")


@pytest.fixture()
def questions():
    return list(QUESTIONS)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """After a test's own body, run its module's ``check_after_test(item)`` (if it defines one): a failed
    check fails THAT test (not a fixture teardown at the end of the module)."""
    outcome = yield
    check = getattr(item.module, "check_after_test", None)
    if check is not None and outcome.excinfo is None:
        check(item)
