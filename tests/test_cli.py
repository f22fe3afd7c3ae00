"""The CLI: `eval` writes metrics.json and predictions.csv; bad input is one clear line and exit code 2."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from nasa_lens.cli import main


@pytest.fixture()
def jsonl(tmp_path):
    path = tmp_path / "tiny.jsonl"
    rows = [
        {"id": "a", "question": "Is 7 a prime number?", "label": "yes"},
        {"id": "b", "question": "Is 12 + 30 equal to 45?", "label": "no"},
        {"id": "c", "question": "Is 100 greater than 99?", "label": "yes"},
        {"id": "d", "question": "Is [3, 1, 2] sorted?", "label": "no"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_eval_writes_metrics_and_predictions(jsonl, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["eval", "--model", "tiny-random", "--data", str(jsonl), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("accuracy", "precision", "recall", "f1", "pr_gap", "yes_rate", "ece", "auroc", "n"):
        assert key in metrics
    assert metrics["n"] == 4
    pred = pd.read_csv(out / "predictions.csv")
    assert list(pred.columns[:4]) == ["id", "label", "p_yes", "pred"]
    assert sorted(pred["id"]) == ["a", "b", "c", "d"]
    assert ((pred["p_yes"] > 0.5) == (pred["pred"] == "yes")).all()
    assert metrics["yes_rate"] == pytest.approx((pred["pred"] == "yes").mean())
    assert "pr_gap" in capsys.readouterr().out


def test_malformed_dataset_line_is_one_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "Is it?", "label": "yes"}\n{"question": "Is it?", "label": "maybe"}\n')
    out = tmp_path / "out"
    assert main(["eval", "--model", "tiny-random", "--data", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:2" in err and "maybe" in err
    assert not out.exists()


def test_unknown_model_is_one_clear_error(jsonl, tmp_path, capsys, monkeypatch):
    from nasa_lens import models

    monkeypatch.setattr(models, "_hub_reachable", lambda timeout=3.0: False)
    assert main(["eval", "--model", "nobody/none", "--data", str(jsonl), "--out", str(tmp_path / "o")]) == 2
    assert "model 'nobody/none'" in capsys.readouterr().err


def test_models_and_data_list(capsys):
    assert main(["models"]) == 0
    assert "smollm2-135m-instruct" in capsys.readouterr().out
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "strategyqa" in out and "arithmetic" in out
