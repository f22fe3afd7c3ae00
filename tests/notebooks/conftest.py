"""Fixtures of the notebooks tier: each notebook runs with small settings (``NASA_LENS_NOTEBOOK_QUICK=1``)
unless ``NASA_LENS_NOTEBOOK_FULL`` is set (``make notebooks``), and writes its outputs under the test's tmp_path
(``NASA_LENS_NOTEBOOK_OUT``)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def notebook_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    if not os.environ.get("NASA_LENS_NOTEBOOK_FULL"):
        monkeypatch.setenv("NASA_LENS_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("NASA_LENS_NOTEBOOK_OUT", str(tmp_path))
    return tmp_path
