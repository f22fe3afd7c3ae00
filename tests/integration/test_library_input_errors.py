"""Bad input at the library level on a real model: SmolLM2's context window."""
from __future__ import annotations

import pytest

from nasa_lens.datasets import Example
from nasa_lens.prompts import PromptError, build_batch


@pytest.mark.slow
def test_smollm2_context_window(smol):
    assert smol.n_ctx == 8192
    with pytest.raises(PromptError, match=r"more than the 8192-token context window of model 'smollm2-135m-instruct'"):
        build_batch(smol, [Example("Is " + "very " * 8200 + "long?", "yes", "huge")])
