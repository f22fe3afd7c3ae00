"""The CLI: `eval` writes metrics.json and predictions.csv; bad input is one clear line and exit code 2."""
from __future__ import annotations

import json
from typing import Literal

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


# ------------------------------------------------------------------------------------------ errors by kind


def _raising(exc: BaseException):
    def handler(args):
        raise exc

    return handler


def test_bad_input_is_one_line_and_exit_2(monkeypatch, capsys):
    from nasa_lens.commands import basic
    from nasa_lens.vocab import InputError

    monkeypatch.setattr(basic, "_models", _raising(InputError("bad value for --x")))
    assert main(["models"]) == 2
    err = capsys.readouterr().err
    assert err == "nasa-lens models: error: bad value for --x\n"
    assert main(["-v", "models"]) == 2  # -v adds the traceback, the exit code stays 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "InputError: bad value for --x" in err
    assert err.rstrip().splitlines()[-1] == "nasa-lens models: error: bad value for --x"


@pytest.mark.parametrize("exc", [RuntimeError("CUDA out of memory"), ValueError("shape mismatch"), FileNotFoundError("x")])
def test_any_other_exception_is_an_internal_error_exit_1(monkeypatch, capsys, exc):
    from nasa_lens.commands import basic

    monkeypatch.setattr(basic, "_models", _raising(exc))
    assert main(["models"]) == 1
    err = capsys.readouterr().err
    assert err == f"nasa-lens models: internal error ({type(exc).__name__}): {exc}\n"
    assert "Traceback" not in err
    assert main(["--verbose", "models"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and f"internal error ({type(exc).__name__})" in err


def test_keyboard_interrupt_exits_130(monkeypatch, capsys):
    from nasa_lens.commands import basic

    monkeypatch.setattr(basic, "_models", _raising(KeyboardInterrupt()))
    assert main(["models"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_every_user_error_class_is_a_nasa_lens_error():
    from nasa_lens.adapters import AdapterError
    from nasa_lens.causal import CausalError
    from nasa_lens.config import ConfigError
    from nasa_lens.datasets import DatasetError
    from nasa_lens.finetune import CheckpointError, NASAConfigError
    from nasa_lens.heads import HeadSpecError
    from nasa_lens.interventions import InterventionError
    from nasa_lens.models import ModelLoadError
    from nasa_lens.prompts import PromptError
    from nasa_lens.vocab import InputError, InputFileNotFoundError, NasaLensError

    for cls in (AdapterError, CausalError, ConfigError, DatasetError, CheckpointError, NASAConfigError, HeadSpecError,
                InterventionError, ModelLoadError, PromptError, InputError, InputFileNotFoundError):
        assert issubclass(cls, NasaLensError), cls


def test_a_missing_scan_folder_is_bad_input(tmp_path, jsonl, capsys):
    rc = main(["ablate", "--model", "tiny-random", "--data", str(jsonl), "--heads", "top:2", "--nas", str(tmp_path / "none"),
               "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "nasa-lens ablate: error:" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ flags from the configs


def _subparsers(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                yield from ((f"{name} {n}", s) for n, s in _subparsers(sub))


def test_every_flag_default_is_its_config_default():
    """For every flag of every command: a flag generated from a config defaults to the config field's default
    (for every config that reads it); the few flags that set no config field are listed here by name."""
    import argparse
    import dataclasses

    from nasa_lens.cli import build_parser
    from nasa_lens.commands.flags import config_flags

    not_config = {  # command options that are not a field of a procedure's config
        "data fetch": {"names", "refresh"},
        "data pull": {"names", "refresh"},
        "eval": {"out"},
        "scan": {"out"},
        "ablate": {"out"},
        "patch": {"out"},
        "sweep": {"out"},
        "dla": {"out"},
        "paths": {"out"},
        "finetune": {"out"},
        "compare": {"out"},
        "study": {"config", "quick", "overrides", "models", "out", "figures", "no_png", "print_config", "no_progress"},
        "report": {"out"},
    }
    checked = 0
    for name, sub in _subparsers(build_parser()):
        record = config_flags(sub)
        for action in sub._actions:
            if action.dest == "help" or action.nargs == argparse.PARSER:
                continue
            if action.dest in not_config.get(name, set()) or action.dest == "json":  # --json: how a table prints
                continue
            if not action.option_strings:
                continue
            assert action.dest in record, f"{name}: flag {action.option_strings} sets no config field"
            for cls, field_name in record[action.dest]:
                f = {g.name: g for g in dataclasses.fields(cls)}[field_name]
                if f.default is dataclasses.MISSING:
                    assert action.required, f"{name} {action.option_strings}: {cls.__name__}.{field_name} has no default"
                else:
                    assert action.default == f.default, (name, action.option_strings, cls.__name__)
                checked += 1
    assert checked > 60


def test_every_flag_help_says_what_the_flag_does():
    """No flag's help defers to somewhere else ("as usual", "as in ...") or leaks docstring markup: each is its
    own sentence, one per field (a grouped ``a, b: as usual`` docstring entry gave three flags the same text)."""
    from nasa_lens.cli import build_parser

    bad = []
    for name, sub in _subparsers(build_parser()):
        for action in sub._actions:
            text = action.help or ""
            if any(s in text for s in ("as usual", "as in ", ":func:", ":class:", "``")):
                bad.append(f"{name} {'/'.join(action.option_strings)}: {text}")
    assert not bad, "\n".join(bad)


def test_flags_helper_types_and_round_trip():
    import argparse
    from dataclasses import dataclass, field

    from nasa_lens.commands.flags import add_config_flags, config_from_args

    @dataclass
    class Cfg:
        """A config.

        Attributes:
            name: the name, from the docstring.
        """

        name: str
        count: int = 3
        rate: float | None = None
        mode: Literal["a", "b"] = "a"
        fast: bool = False
        png: bool = True
        top_k: int = field(default=5, metadata={"help": "how many"})

    p = argparse.ArgumentParser()
    add_config_flags(p, Cfg, rename={"top_k": "top"})
    args = p.parse_args(["--name", "x", "--rate", "0.5", "--mode", "b", "--fast", "--no-png", "--top", "7"])
    assert config_from_args(Cfg, args) == Cfg("x", 3, 0.5, "b", True, False, 7)
    assert config_from_args(Cfg, p.parse_args(["--name", "y"])) == Cfg("y")
    helps = {a.dest: a.help for a in p._actions}
    assert helps["name"] == "the name, from the docstring" and helps["top_k"].startswith("how many")
    with pytest.raises(SystemExit):
        p.parse_args(["--name", "x", "--mode", "c"])  # Literal -> choices
    with pytest.raises(SystemExit):
        p.parse_args([])  # a field without default is a required flag

    @dataclass
    class Other:
        count: int = 4  # shared with Cfg but another default: refused when the parser is built

    with pytest.raises(TypeError, match="count"):
        add_config_flags(p, Other)
