"""The README's Python quick start runs as written (real model)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from unit.test_docs import FENCE, FIRST_SCREEN, README


@pytest.mark.slow
def test_readme_python_quick_start_runs(smol, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """The README's first Python block, as written except a smaller sample (and no PNG), run in a scratch folder;
    ``load_model()`` (the default model) hands back the session's SmolLM2 instead of loading it again."""
    first = "\n".join(README.read_text(encoding="utf-8").splitlines()[:FIRST_SCREEN]) + "\n"
    code = next(body for lang, body in FENCE.findall(first) if lang == "python")
    code = re.sub(r"\blimit=\d+", "limit=4", code)
    import nasa_lens.plots.save

    import nasa_lens

    real_load = nasa_lens.load_model
    monkeypatch.setattr(nasa_lens, "load_model", lambda *a, **k: smol if not (a or k) else real_load(*a, **k))
    monkeypatch.setattr(nasa_lens.plots.save, "find_browser", lambda *a, **k: None)  # HTML only: no PNG export
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md quick start", "exec"), {"__name__": "readme_quick_start"})
    out = capsys.readouterr().out
    assert "pr_gap" in out and "nas_mean" in out
    assert (tmp_path / "results" / "nas_heatmap.html").exists()
