"""The CLI's output on a real run: the progress bars of a whole study."""
from __future__ import annotations

import json
import re

import pytest

from nasa_lens.cli import main


TINY_STUDY = ["--set", 'models=["tiny-random"]', "--set", "report.png=false", "--set", "data.dataset=arithmetic",
              "--set", 'data.generalisation=["comparison"]', "--set", "conditions.datasets=[]"]


@pytest.mark.slow
def test_study_shows_overall_and_stage_bars(tmp_path, capsys) -> None:
    out = str(tmp_path / "study")
    assert main(["study", "--quick", *TINY_STUDY, "--out", out]) == 0
    err = capsys.readouterr().err
    assert re.search(r"study: 100%\|[^\n\r]*\| 7/7 ", err)  # overall: stages done of all
    # the stages' own bars (cleared when done, so any drawn state counts: see the test above)
    assert re.search(r"eval: +\d+%\|", err) and re.search(r"NAS[^\n\r]*\d+%\|", err)
    assert main(["-q", "study", "--quick", *TINY_STUDY, "--out", out, "--json"]) == 0  # cached: instant
    captured = capsys.readouterr()
    assert "%|" not in captured.err
    rows = json.loads(captured.out)
    assert len(rows) == 7 and all(r["cached"] is True for r in rows)
