"""Shared fixtures: models are loaded once per session (tiny-random in ~1 s, SmolLM2 in ~2 s once cached)."""
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


@pytest.fixture(scope="module")
def model(tiny):
    """tiny-random under the name the unit-test modules use (the one session copy: every test leaves it clean,
    the hook-leak check below fails the test that does not)."""
    return tiny


@pytest.fixture(scope="module")
def tiny_hf():
    """A separate Hugging Face copy of tiny-random (``boot_transformers`` rewires the bridge's own HF model)."""
    from nasa_lens.models import tiny_random

    return tiny_random().eval()


@pytest.fixture(scope="session")
def smol():
    from nasa_lens.models import load_model

    return load_model("smollm2-135m-instruct")


@pytest.fixture()
def questions():
    return list(QUESTIONS)


@pytest.hookimpl(hookwrapper=True)
@pytest.fixture()
def no_model(monkeypatch):
    """Fail the test's command if it loads a model: its error must come first."""
    import nasa_lens.models as models

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad input was reported")

    monkeypatch.setattr(models, "load_model", refuse)


def pytest_runtest_call(item):
    """After a test's own body, run its module's ``check_after_test(item)`` (if it defines one): a failed
    check fails THAT test (not a fixture teardown at the end of the module)."""
    outcome = yield
    check = getattr(item.module, "check_after_test", None)
    if check is not None and outcome.excinfo is None:
        check(item)
