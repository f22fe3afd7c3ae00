"""Bad input at the command line: every bad input is one line and exit code 2, found before the model loads
or any computation runs (--out, unreadable data, adapters, devices, empty samples, head specs); an internal
failure is exit code 1; ``-v`` changes neither; a command's outputs appear together; one run per study folder.
(The cases came from issue #15's hostile-input review.)"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nasa_lens.cli import main
from nasa_lens.datasets import Example, write_jsonl

from cli_helpers import one_line_error as _err  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def data(tmp_path) -> Path:
    return write_jsonl(tmp_path / "q.jsonl", [Example(f"Is {i} even?", "yes" if i % 2 == 0 else "no", f"q{i}") for i in range(8)])



def _commands(data: Path, out: Path) -> dict[str, list[str]]:
    m = ["--model", "tiny-random"]
    return {
        "eval": ["eval", *m, "--data", str(data), "--out", str(out)],
        "scan": ["scan", *m, "--data", str(data), "--out", str(out)],
        "ablate": ["ablate", *m, "--data", str(data), "--heads", "0.1", "--out", str(out)],
        "patch": ["patch", *m, "--data", str(data), "--out", str(out)],
        "sweep": ["sweep", *m, "--data", str(data), "--heads", "0.1", "--out", str(out)],
        "finetune": ["finetune", *m, "--train", str(data), "--steps", "2", "--out", str(out)],
        "study": ["study", "--quick", "--model", "tiny-random", "--out", str(out)],
        "dla": ["dla", *m, "--data", str(data), "--out", str(out)],
        "paths": ["paths", *m, "--data", str(data), "--senders", "0.1", "--out", str(out)],
        "compare": ["compare", *m, "--train", str(data), "--test", "arithmetic", "--methods", "base", "--out", str(out)],
    }


# ------------------------------------------------------------------------------------------------------ --out


@pytest.mark.parametrize("command", ["eval", "scan", "ablate", "patch", "sweep", "finetune", "study", "dla", "paths", "compare"])
def test_out_that_is_a_file_is_refused_before_any_work(command, data, tmp_path, capsys, no_model):
    out = tmp_path / "F"
    out.write_text("x\n")
    assert main(_commands(data, out)[command]) == 2
    assert _err(capsys) == f"nasa-lens {command}: error: --out {out} is an existing file, not a folder; choose a folder path"
    assert out.read_text() == "x\n"


@pytest.mark.parametrize("command", ["eval", "scan", "finetune", "study"])
def test_out_under_a_file_is_refused(command, data, tmp_path, capsys, no_model):
    (tmp_path / "F").write_text("x\n")
    out = tmp_path / "F" / "sub"
    assert main(_commands(data, out)[command]) == 2
    assert f"--out {out} cannot be created: {tmp_path / 'F'} is a file, not a folder" in _err(capsys)


@pytest.mark.parametrize("command", ["eval", "ablate", "study"])
def test_unwritable_out_is_refused(command, data, tmp_path, capsys, no_model, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == locked else real_access(p, mode, **kw))
    assert main(_commands(data, locked / "out")[command]) == 2
    assert f"--out {locked / 'out'}: cannot write in its parent folder {locked} (permission denied)" in _err(capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write in any folder")
def test_unwritable_out_by_mode(data, tmp_path, capsys, no_model):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert main(_commands(data, locked)["eval"]) == 2
        assert "permission denied" in _err(capsys)
    finally:
        locked.chmod(0o700)


# ----------------------------------------------------------------------- unreadable input and internal errors


def test_unreadable_data_is_input_error_even_with_v(data, tmp_path, capsys, no_model, monkeypatch):
    import nasa_lens.datasets.core as core

    monkeypatch.setattr(core, "open", lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "Permission denied")), raising=False)
    argv = _commands(data, tmp_path / "o")["eval"]
    assert main(argv) == 2
    assert _err(capsys) == f"nasa-lens eval: error: cannot read dataset file {data}: Permission denied"
    assert main(["-v", *argv]) == 2  # -v adds the traceback, the code stays
    assert "Traceback" in capsys.readouterr().err


def test_lone_surrogate_is_input_error(tmp_path, capsys, no_model):
    path = tmp_path / "s.jsonl"
    path.write_text('{"id": "q7", "question": "Is \\ud800 odd?", "label": "no"}\n')
    assert main(_commands(path, tmp_path / "o")["scan"]) == 2
    assert _err(capsys) == f"nasa-lens scan: error: {path}:1: example 'q7': question is not valid Unicode: lone surrogate \\ud800 at character 3"


def test_malformed_adapter_json_is_input_error(data, tiny, tmp_path, capsys):
    from nasa_lens.adapters import HeadAdapter, model_shape, save_adapter

    folder = tmp_path / "adapter"
    save_adapter(folder, HeadAdapter([(0, 1)], shape=model_shape(tiny), base_model=tiny.name), tiny)
    meta = json.loads((folder / "adapter.json").read_text())
    meta["heads"] = [0, 1]
    (folder / "adapter.json").write_text(json.dumps(meta))
    argv = _commands(data, tmp_path / "o")["eval"] + ["--adapter", str(folder)]
    for extra in ([], ["-v"]):
        assert main([*extra, *argv]) == 2
        assert f"adapter metadata {folder / 'adapter.json'}: field 'heads' must be a list of" in capsys.readouterr().err


def test_torch_failure_is_internal_error_even_with_v(data, tmp_path, capsys, monkeypatch):
    import nasa_lens.evaluate as evaluate

    def oom(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 14.46 GiB")

    monkeypatch.setattr(evaluate, "predict", oom)
    argv = _commands(data, tmp_path / "o")["eval"]
    assert main(argv) == 1
    assert _err(capsys) == "nasa-lens eval: internal error (RuntimeError): CUDA out of memory. Tried to allocate 14.46 GiB"
    assert main(["-v", *argv]) == 1
    assert not (tmp_path / "o").exists()  # nothing published


# ---------------------------------------------------------------------------------------------------- devices


def test_bad_device_on_the_command_line(data, tmp_path, capsys):
    assert main(_commands(data, tmp_path / "o")["eval"] + ["--device", "foo"]) == 2
    assert "invalid device 'foo'" in _err(capsys)
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------- empty samples


def test_eval_refuses_an_empty_sample(tmp_path, capsys, no_model):
    from nasa_lens.datasets.core import is_test

    train_only = [Example(f"Is {i} even?", "yes" if i % 2 == 0 else "no", f"q{i}") for i in range(40) if not is_test(f"q{i}", 0.3)][:3]
    small = write_jsonl(tmp_path / "small.jsonl", train_only)
    assert main(_commands(small, tmp_path / "o")["eval"] + ["--split", "test"]) == 2
    assert "its 'test' split is empty" in _err(capsys)
    assert main(_commands(small, tmp_path / "o")["eval"] + ["--limit", "0"]) == 2
    assert "limit must be > 0" in _err(capsys)
    assert not (tmp_path / "o").exists()


def test_evaluate_refuses_no_examples(tiny):
    from nasa_lens.evaluate import evaluate
    from nasa_lens.vocab import NasaLensError

    with pytest.raises(NasaLensError, match="nothing to evaluate: the sample is empty"):
        evaluate(tiny, [])


# ----------------------------------------------------------------------- input checked before the model loads


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ablate", "--heads", "top:0"], "--heads: bad head spec 'top:0': K must be >= 1"),
        (["ablate", "--heads", "top:x"], "--heads: bad head spec 'top:x': expected top:K with K an integer"),
        (["ablate", "--heads", "1.2,1.2"], "names a head twice"),
        (["finetune", "--heads", "top:0"], "bad head spec 'top:0': K must be >= 1"),
    ],
)
def test_head_spec_is_refused_before_any_scan(argv, message, data, tmp_path, capsys, no_model):
    data_flag = ["--train", str(data)] if argv[0] == "finetune" else ["--data", str(data)]
    assert main([argv[0], "--model", "tiny-random", *data_flag, *argv[1:], "--out", str(tmp_path / "o")]) == 2
    assert message in _err(capsys)


@pytest.mark.parametrize("command", ["eval", "scan", "ablate", "patch", "finetune", "dla", "paths", "compare"])
def test_data_errors_come_before_the_model_loads(command, tmp_path, capsys, no_model):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "Is 2 even?", "label": "maybe"}\n')
    assert main(_commands(bad, tmp_path / "o")[command]) == 2
    assert f'{bad}:1: label must be "yes" or "no", got "maybe"' in _err(capsys)


def test_ablate_nas_file_is_read_before_the_model_loads(data, tmp_path, capsys, no_model):
    argv = _commands(data, tmp_path / "o")["ablate"]
    argv[argv.index("0.1")] = "top:2"
    assert main([*argv, "--nas", str(tmp_path / "missing")]) == 2
    assert "missing" in _err(capsys)


def test_limit_help_says_what_limit_does(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "exactly N examples" in help_text and "at most" not in help_text


# --------------------------------------------------------------------------------------- one study per folder


def test_second_study_message(tmp_path, capsys, no_model):
    from nasa_lens.io import file_lock
    from nasa_lens.study.common import LOCK_FILE

    out = tmp_path / "study"
    out.mkdir()
    with file_lock(out / LOCK_FILE):
        assert main(["study", "--quick", "--model", "tiny-random", "--out", str(out)]) == 2
        err = _err(capsys)
    assert err.startswith(f"nasa-lens study: error: study folder {out} is in use by another nasa-lens run (pid {os.getpid()}, since ")
    assert err.endswith("); wait for it to finish or use another folder")


def test_study_folder_without_manifest_is_refused(tmp_path):
    """results.json, timings.json and report.md all there, but no manifest.json: a run was killed while
    publishing (the files may be of two runs) or is still running."""
    from nasa_lens.study import load_finished_study
    from nasa_lens.study.pipeline import StudyIncompleteError

    for name in ("results.json", "report.md"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "timings.json").write_text('{"stages": []}')
    with pytest.raises(StudyIncompleteError, match=r"not a finished study: no manifest.json \(the run was interrupted"):
        load_finished_study(tmp_path)


# ------------------------------------------------------------------------------------ outputs appear together

RUNNER = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
os.environ.pop("NASA_LENS_FAULT_AT", None)
import pandas as pd
import torch
torch.set_num_threads(1)  # no thread pool in the parent: forking after torch work is safe
import nasa_lens.models
from nasa_lens.cli import main
model = nasa_lens.models.load_model("tiny-random")  # loaded once; each forked run gets a copy
nasa_lens.models.load_model = lambda *args, **kwargs: model
out = sys.argv[3]
rows = []
for fault, argv in json.loads(sys.argv[2]):
    pid = os.fork()
    if pid == 0:
        torch.set_num_threads(1)
        if fault:
            os.environ["NASA_LENS_FAULT_AT"] = str(fault)
        os._exit(main(argv))
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    n = rows_n = None
    if os.path.isdir(out):  # what a reader sees right after this run ended
        n = json.load(open(os.path.join(out, "metrics.json")))["n"]
        rows_n = len(pd.read_csv(os.path.join(out, "predictions.csv")))
    rows.append([code, n, rows_n])
    if code == 0 and fault:
        break
print("ROWS", json.dumps(rows), flush=True)
"""


def test_eval_outputs_appear_together_whatever_the_kill_point(data, tmp_path):
    """A second eval into the same folder, killed at each of its fault points in turn (os._exit: no cleanup):
    after every kill the folder holds one run's metrics.json and predictions.csv (the old 4 or the new 6),
    never a mix; a file of the user's survives; the next run removes every temporary."""
    out = tmp_path / "out"
    base = ["eval", "--model", "tiny-random", "--data", str(data), "--n-boot", "10", "--batch-size", "8", "--out", str(out)]
    (tmp_path / "runner.py").write_text(RUNNER)
    steps = [[0, [*base, "--limit", "4"]]] + [[k, [*base, "--limit", "6"]] for k in range(1, 12)]
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    proc = subprocess.run([sys.executable, str(tmp_path / "runner.py"), str(REPO), json.dumps(steps), str(out)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0 and "ROWS" in proc.stdout, proc.stderr[-3000:]
    rows = json.loads(proc.stdout.split("ROWS", 1)[1])
    assert rows[0] == [0, 4, 4]
    kills = rows[1:]
    assert [c for c, _, _ in kills[:-1]] == [86] * (len(kills) - 1) and kills[-1][0] == 0  # every point, then done
    assert len(kills) >= 6  # before/inside both file writes, and the publishing steps
    for code, n, n_rows in kills:
        assert n == n_rows, "metrics.json and predictions.csv from different runs"
        assert n in (4, 6, None)
    assert kills[-1][1:] == [6, 6] and (out / "notes.txt").read_text() == "mine"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] + [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_user_files_in_out_survive_a_rerun(data, tmp_path):
    from nasa_lens.io import atomic_output

    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "metrics.json").write_text("old")
    with atomic_output(out) as tmp:
        (tmp / "metrics.json").write_text("new")
    assert (out / "notes.txt").read_text() == "mine" and (out / "metrics.json").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_out_dot_and_symlinked_out(data, tmp_path, monkeypatch):
    """``--out .`` (the working directory cannot be renamed away: files are replaced one by one) and a
    symlinked --out (published into its target, the link kept) both work and leave no temporaries."""
    from nasa_lens.io import atomic_output

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "metrics.json").write_text("old")
    with atomic_output(".") as tmp:
        (tmp / "metrics.json").write_text("new")
    assert (work / "metrics.json").read_text() == "new" and sorted(p.name for p in work.iterdir()) == ["metrics.json"]
    target = tmp_path / "target"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    (tmp_path / "link").symlink_to(target)
    with atomic_output(tmp_path / "link") as tmp:
        (tmp / "metrics.json").write_text("new")
    assert (tmp_path / "link").is_symlink() and (target / "metrics.json").read_text() == "new"
    assert (target / "notes.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
