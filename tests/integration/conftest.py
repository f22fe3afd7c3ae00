"""Fixtures of the integration tier (real checkpoints, subprocesses, a browser, the wheel, the committed
evidence): ``smol``, the session's SmolLM2-135M-Instruct (~2 s once cached)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def smol():
    from nasa_lens.models import load_model

    return load_model("smollm2-135m-instruct")
