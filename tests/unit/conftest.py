"""Fixtures of the unit tier (tiny-random, in-process, seconds each): ``model`` (the session's tiny-random under
the name the unit modules use), ``tiny_hf`` (a separate Hugging Face copy) and ``no_model`` (a command that loads
a model fails: its input error must come first)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def model(tiny):
    """tiny-random under the name the unit-test modules use (the one session copy: every test leaves it clean,
    the hook-leak check (``check_after_test`` in test_nasa.py) fails the test that does not)."""
    return tiny


@pytest.fixture(scope="module")
def tiny_hf():
    """A separate Hugging Face copy of tiny-random (``boot_transformers`` rewires the bridge's own HF model)."""
    from nasa_lens.models import tiny_random

    return tiny_random().eval()


@pytest.fixture()
def no_model(monkeypatch):
    """Fail the test's command if it loads a model: its error must come first."""
    import nasa_lens.models as models

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad input was reported")

    monkeypatch.setattr(models, "load_model", refuse)
