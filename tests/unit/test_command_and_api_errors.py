"""Bad input to the newer commands (paths, dla, compare, report, eval --method), the cache, a process group,
SIGTERM and the Python API: every input error is exit 2 with one line before the model loads, and leaves
nothing behind. (The cases came from issue #23's hostile-input review; the torchrun launches are in
tests/integration/test_command_and_api_errors.py.)"""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import nasa_lens as nl
from nasa_lens.cli import main
from nasa_lens.datasets import Example, write_jsonl

from cli_helpers import one_line_error as _err  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TINY = ["--model", "tiny-random"]


@pytest.fixture()
def data(tmp_path) -> Path:
    return write_jsonl(tmp_path / "q.jsonl", [Example(f"Is {i} even?", "yes" if i % 2 == 0 else "no", f"q{i}") for i in range(40)])



def _run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, _err(capsys)


# ------------------------------------------------------------------------------------------------ top level


def test_nasa_lens_error_is_exported_at_the_top_level():
    from nasa_lens.vocab import InputError, NasaLensError

    assert nl.NasaLensError is NasaLensError and nl.InputError is InputError
    try:
        nl.load_dataset("no-such-dataset")
    except nl.NasaLensError as exc:
        assert "unknown dataset 'no-such-dataset'" in str(exc)


# ---------------------------------------------------------------------------------- path patching: head specs


@pytest.mark.parametrize(("senders", "receivers", "first"), [("1.0", "0.1", "1.0"), ("0.0", "0.1", "0.0"), ("0.0", "0.0", "0.0")])
def test_paths_receiver_not_after_its_sender_is_refused(senders, receivers, first, data, tmp_path, capsys, no_model):
    out = tmp_path / "o"
    code, err = _run(["paths", *TINY, "--data", str(data), "--senders", senders, "--receivers", receivers, "--out", str(out)], capsys)
    assert code == 2
    assert err.startswith(f"nasa-lens paths: error: --receivers: receiver {receivers} is not after any sender: a path runs "
                          f"from a sender head to a receiver in a later layer, and the earliest sender {first} is in layer {first[0]}")
    assert not out.exists()


def test_path_patch_refuses_a_receiver_before_its_sender(tiny, questions):
    from nasa_lens.causal import CausalError
    from nasa_lens.causal.patching import swap_pairs
    from nasa_lens.causal.paths import path_patch
    from nasa_lens.prompts import PromptFormat

    pairs = swap_pairs(questions[:2], PromptFormat())
    with pytest.raises(CausalError, match="receiver 0.1 is not after any sender"):
        path_patch(tiny, pairs, [(1, 0)], [(0, 1)], progress=False)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--receivers", "20.x"], "--receivers: bad head '20.x': expected LAYER.HEAD, e.g. 18.4"),
        (["--senders", ""], "--senders: empty head spec: give top:K, bottom:K, random:K[:SEED] or L.H,L.H"),
        (["--senders", "0.1,0.1"], "--senders: head spec '0.1,0.1' names a head twice"),
        (["--senders", "top:0"], "--senders: bad head spec 'top:0': K must be >= 1"),
        (["--receivers", "top:x"], "--receivers: bad head spec 'top:x': expected top:K with K an integer"),
    ],
)
def test_paths_head_specs_are_checked_with_the_other_flags(flags, message, data, tmp_path, capsys, no_model):
    code, err = _run(["paths", *TINY, "--data", str(data), *flags, "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and err == f"nasa-lens paths: error: {message}"
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- user files read before the model


def test_eval_method_folder_is_read_before_the_model(data, tmp_path, capsys, no_model):
    missing = tmp_path / "MISSING_DIR"
    code, err = _run(["eval", *TINY, "--data", str(data), "--method", str(missing), "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert err == f"nasa-lens eval: error: no saved de-biasing fix at {missing}: expected a folder holding method.json"
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["eval", "scan", "dla"])
def test_adapter_metadata_is_read_before_the_model(command, data, tmp_path, capsys, no_model):
    missing = tmp_path / "MISSING_ADAPTER"
    code, err = _run([command, *TINY, "--data", str(data), "--adapter", str(missing), "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert err == (f"nasa-lens {command}: error: no adapter at {missing}: expected a folder holding adapter.safetensors + "
                   "adapter.json, or a .safetensors file")


# ------------------------------------------------------------------------------- --out through a symlink loop


def test_out_through_a_symlink_loop_is_refused_before_any_work(data, tmp_path, capsys, no_model):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    for out in (loop, loop / "sub"):
        code, err = _run(["eval", *TINY, "--data", str(data), "--out", str(out)], capsys)
        assert code == 2
        assert err == f"nasa-lens eval: error: --out {out} cannot be used: {loop} is a symbolic link loop"
    broken = tmp_path / "broken"
    broken.symlink_to(tmp_path / "nowhere")
    code, err = _run(["scan", *TINY, "--data", str(data), "--out", str(broken)], capsys)
    assert code == 2 and err == f"nasa-lens scan: error: --out {broken} cannot be used: {broken} is a broken symbolic link (to {tmp_path / 'nowhere'})"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "loop", "q.jsonl"]


# ------------------------------------------------------------------------------------------- the cache folder


def test_cache_that_is_a_file_names_the_variable(data, tmp_path, capsys, monkeypatch):
    cache = tmp_path / "cachefile"
    cache.write_text("x")
    monkeypatch.setenv("NASA_LENS_CACHE", str(cache))
    code, err = _run(["eval", *TINY, "--data", "arithmetic", "--limit", "4", "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert err == f"nasa-lens eval: error: NASA_LENS_CACHE={cache} is a file, not a folder; point NASA_LENS_CACHE to a folder"
    assert not (tmp_path / "o").exists() and cache.read_text() == "x"


def _read_only(monkeypatch, root: Path) -> None:
    """Simulate a read-only file system under ``root`` (root may write anywhere): no write access, mkdir EROFS."""
    real_access, real_mkdir = os.access, Path.mkdir

    def access(p, mode, **kw):
        if mode & os.W_OK and Path(p).resolve().is_relative_to(root.resolve()):
            return False
        return real_access(p, mode, **kw)

    def mkdir(self, *args, **kwargs):
        if Path(self).resolve().is_relative_to(root.resolve()):
            if kwargs.get("exist_ok") and self.is_dir():
                return None
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(Path, "mkdir", mkdir)


def test_read_only_cache_is_usable_for_what_it_holds(tmp_path, capsys, monkeypatch):
    """A read-only, empty cache: tiny-random on a generator needs nothing from it (its tokenizer is used without
    being cached); a model that is not in it is one line naming the variable; a missing cache folder too."""
    cache = tmp_path / "ro"
    cache.mkdir()
    monkeypatch.setenv("NASA_LENS_CACHE", str(cache))
    _read_only(monkeypatch, cache)
    out = tmp_path / "o"
    assert main(["eval", *TINY, "--data", "arithmetic", "--limit", "4", "--n-boot", "10", "--out", str(out)]) == 0
    capsys.readouterr()
    assert (out / "metrics.json").is_file() and list(cache.iterdir()) == []
    code, err = _run(["eval", "--model", "smollm2-135m-instruct", "--data", "arithmetic", "--limit", "4", "--out", str(tmp_path / "o2")], capsys)
    assert code == 2 and err.startswith(f"nasa-lens eval: error: NASA_LENS_CACHE={cache} is read-only and does not hold the dequantized ")
    monkeypatch.setenv("NASA_LENS_CACHE", str(cache / "new"))
    code, err = _run(["eval", *TINY, "--data", "arithmetic", "--limit", "4", "--out", str(tmp_path / "o3")], capsys)
    assert code == 2
    assert err == (f"nasa-lens eval: error: NASA_LENS_CACHE={cache / 'new'}: cannot create {cache / 'new'} (Read-only file "
                   "system); point NASA_LENS_CACHE to a writable folder")
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()


# ------------------------------------------------------------------------------------------ report of a study


@pytest.fixture()
def fake_study(tmp_path, monkeypatch) -> Path:
    """A finished study in seconds: every stage faked; the report stage draws one figure and the bundle."""
    from nasa_lens import study
    from nasa_lens.config import StudyConfig

    def make(kind: str):
        def fake(env, model, ctx):
            if kind == "report":
                figs = ctx.work / "figures"
                figs.mkdir()
                (figs / "fig_a.html").write_text("<html>figure a</html>")
                (figs / "plotly.min.js").write_text("/* plotly */")
                return {"version": "test", "config": env.cfg.to_dict(), "models": {}, "figures": {"m": {"fig": "fig_a"}}}
            return {"kind": kind, "model": model}

        return fake

    for kind in study.STAGE_ORDER:
        monkeypatch.setitem(study.STAGE_FUNCTIONS, kind, make(kind))
    out = tmp_path / "study"
    study.run_study(StudyConfig().with_overrides({"models": ["a"], "report": {"png": False}}), out, progress=False)
    return out


def test_report_checks_its_output_before_any_work(fake_study, data, tmp_path, capsys, monkeypatch):
    existing = tmp_path / "existing"
    existing.mkdir()
    code, err = _run(["report", str(fake_study), "--out", str(existing)], capsys)
    assert code == 2
    assert err == f"nasa-lens report: error: --out {existing} is a folder; give the path of the file to write (e.g. {existing / 'report.html'})"
    assert list(existing.iterdir()) == []
    code, err = _run(["report", str(data)], capsys)
    assert code == 2 and err == f"nasa-lens report: error: {data} is not a study folder: it is a file (give the --out folder of a study)"
    ro = tmp_path / "ro"
    ro.mkdir()
    _read_only(monkeypatch, ro)
    code, err = _run(["report", str(fake_study), "--out", str(ro / "r.html")], capsys)
    assert code == 2
    assert err == f"nasa-lens report: error: --out {ro / 'r.html'}: cannot write in its folder {ro} (permission denied or a read-only file system)"
    _read_only(monkeypatch, fake_study)
    before = (fake_study / "report.html").read_bytes()
    code, err = _run(["report", str(fake_study)], capsys)
    assert code == 2 and f"cannot write in its folder {fake_study} (permission denied or a read-only file system)" in err
    assert (fake_study / "report.html").read_bytes() == before


def test_a_copied_study_reads_its_own_figures(fake_study, tmp_path, capsys):
    from nasa_lens.study import load_finished_study
    from nasa_lens.study.pipeline import StudyIncompleteError

    manifest = json.loads((fake_study / "manifest.json").read_text())
    assert sorted(manifest["figures"]) == ["figures/fig_a.html", "figures/plotly.min.js"]
    assert json.loads((fake_study / "timings.json").read_text())["figures_dir"] == "figures"
    copy = tmp_path / "copy"
    shutil.copytree(fake_study, copy)
    assert load_finished_study(copy).figures_dir == copy / "figures"
    assert main(["report", str(copy), "--plotlyjs", "shared"]) == 0
    capsys.readouterr()
    assert '<script src="figures/plotly.min.js"></script>' in (copy / "report.html").read_text()
    (copy / "figures" / "fig_a.html").unlink()
    with pytest.raises(StudyIncompleteError, match="the figure figures/fig_a.html is missing or changed"):
        load_finished_study(copy)
    assert load_finished_study(fake_study).figures_dir == fake_study / "figures"  # the original is untouched


# ----------------------------------------------------------------------- method.json fields and the threshold


def _method_folder(tmp_path: Path, **changes) -> Path:
    from nasa_lens.debias.base import DEBIAS_FORMAT, DEBIAS_VERSION

    folder = tmp_path / "fix"
    folder.mkdir(exist_ok=True)
    meta = {"format": DEBIAS_FORMAT, "version": DEBIAS_VERSION, "method": "steer", "base_model": "tiny-random",
            "heads": ["0.1"], "threshold": 0.5, "options": {}, "state": {"alpha": 1.0}}
    for key, value in changes.items():
        if key == "alpha":
            meta["state"]["alpha"] = value
        else:
            meta[key] = value
    (folder / "method.json").write_text(json.dumps(meta))
    return folder


@pytest.mark.parametrize(
    ("changes", "field", "want", "shown"),
    [
        ({"threshold": 7.5}, "threshold", "a number in (0, 1)", "7.5"),
        ({"threshold": float("nan")}, "threshold", "a number in (0, 1)", "nan"),
        ({"threshold": "high"}, "threshold", "a number in (0, 1)", "'high'"),
        ({"alpha": "x"}, "state.alpha", "a finite number", "'x'"),
    ],
)
def test_method_json_fields_are_checked_before_the_model(changes, field, want, shown, data, tmp_path, capsys, no_model):
    folder = _method_folder(tmp_path, **changes)
    code, err = _run(["eval", *TINY, "--data", str(data), "--method", str(folder), "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert err == f"nasa-lens eval: error: {folder / 'method.json'}: field '{field}' must be {want}, got {shown}"


@pytest.mark.parametrize("threshold", [2, 7.5, 0.0, 1.0, float("nan"), "0.5", True])
def test_one_threshold_check_for_cli_method_and_api(threshold, tiny, questions):
    from nasa_lens.jobs.evaluate import EvalConfig

    with pytest.raises(nl.InputError, match=r"threshold must be in \(0, 1\)"):
        nl.evaluate(tiny, questions, threshold=threshold)
    with pytest.raises(nl.InputError, match=r"threshold must be in \(0, 1\)"):
        nl.scan_nas(tiny, questions, threshold=threshold, progress=False)
    with pytest.raises(nl.InputError, match=r"threshold must be in \(0, 1\)"):
        EvalConfig(threshold=threshold)


# --------------------------------------------------------------- compare: the same data whatever its spelling


def test_compare_recognises_the_same_data_whatever_its_spelling(data, tmp_path, monkeypatch):
    from nasa_lens.jobs.compare import CompareConfig, load_compare_data

    monkeypatch.chdir(tmp_path)
    for train, test in (("q.jsonl", str(data)), (str(data), "./q.jsonl"), ("arithmetic", "arithmetic:d2")):
        cfg = CompareConfig(train=train, test=test, limit=8, train_limit=8)
        with pytest.warns(UserWarning, match="also a training set: evaluated on its test split") as caught:
            train_set, tests, notes = load_compare_data(cfg)
        assert len(notes) == 1 and len(caught) == 1
        (test_set,) = tests.values()
        assert not {ex.question for ex in train_set} & {ex.question for ex in test_set}, (train, test)
    cfg = CompareConfig(train="arithmetic", test="arithmetic:d3", limit=8, train_limit=8)
    assert load_compare_data(cfg)[2] == []  # another level of the generator: other data


def test_compare_warning_is_one_line(data, tmp_path, capsys):
    out = tmp_path / "o"
    # -q: no progress bars, so the warning must be the last line (before, a Python source line followed it)
    code = main(["-q", "compare", *TINY, "--train", str(data), "--test", str(data), "--methods", "base", "--limit", "4",
                 "--train-limit", "8", "--n-boot", "10", "--no-lm-loss", "--out", str(out)])
    assert code == 0
    lines = capsys.readouterr().err.strip().splitlines()
    warning = [line for line in lines if "also a training set" in line]
    assert warning == [f"nasa-lens compare: warning: test set {str(data)!r} is also a training set: evaluated on its test "
                       "split (held-out examples of the trained distribution, not unseen data)"]
    assert lines[-1] == warning[0]


# -------------------------------------------------------------------------------- a fix applied inside itself


@pytest.mark.parametrize("method", ["base", "threshold", "steer"])
def test_a_fix_applied_inside_itself_is_refused(method, tiny):
    from nasa_lens.debias import METHODS
    from nasa_lens.debias.base import DebiasError

    options = {"k": 2, "fit_limit": 16} if method == "steer" else {}
    fix = METHODS[method](**options).fit(tiny, nl.load_dataset("arithmetic", limit=16))
    if method == "steer":
        fix.alpha = 1.0  # a steering that changes the model (the fit may choose 0 on a random model)
    with fix.apply(tiny):
        with pytest.raises(DebiasError, match=f"{method}: this fix is already applied"):
            with fix.apply(tiny):
                pass
    with fix.apply(tiny):  # after the block it applies again
        pass


# -------------------------------------------------------------------------------------- the Python API's data


def test_api_accepts_a_dataset_name_and_dicts(tiny):
    rows = [{"question": "Is 4 even?", "label": "yes"}, {"question": "Is 5 even?", "label": "no", "id": "five"}]
    res = nl.evaluate(tiny, rows, n_boot=10, progress=False)
    assert res.n == 2 and list(res.ids) == ["0", "five"]
    nas = nl.scan_nas(tiny, rows, progress=False)
    assert nas.ids == ["0", "five"] and list(nas.labels) == [1, 0]
    res = nl.evaluate(tiny, "lookup", n_boot=10, progress=False)
    assert res.dataset == "lookup" and res.n == len(nl.load_dataset("lookup"))


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        (["Is 4 even?", "Is 5 even?"], "evaluate: example 0 is a plain string, a prompt without a label"),
        ([{"question": "Is 4 even?"}], 'evaluate: example 0: missing label (must be "yes" or "no")'),
        ([{"label": "yes"}], "evaluate: example 0: question must be a non-empty string (missing)"),
        ([4, 5], "evaluate: example 0 is of type int"),
        (5, "evaluate: expected a dataset (a name, a path, or a sequence of examples), got int"),
        ("no-such-dataset", "unknown dataset 'no-such-dataset'"),
    ],
)
def test_api_refuses_the_rest_before_any_forward(dataset, message, tiny, monkeypatch):
    import nasa_lens.evaluate as evaluate

    monkeypatch.setattr(evaluate, "predict", lambda *a, **k: pytest.fail("a forward ran before the bad data was refused"))
    with pytest.raises(nl.NasaLensError) as info:
        nl.evaluate(tiny, dataset)
    assert message in str(info.value)


# -------------------------------------------------------------------------------------------- a process group


def test_run_study_refuses_a_process_group(tmp_path, monkeypatch):
    from nasa_lens import parallel
    from nasa_lens.config import StudyConfig
    from nasa_lens.study import run_study

    monkeypatch.setattr(parallel, "world", lambda: parallel.World(rank=1, size=2, initialised=True))
    with pytest.raises(parallel.ParallelError, match="run_study runs as one process"):
        run_study(StudyConfig(), tmp_path / "s", progress=False)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------- SIGTERM

SLOW_EVAL = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
import nasa_lens.evaluate as evaluate
real = evaluate.predict
def slow(*a, **k):
    print("FORWARD", flush=True)
    time.sleep(60)
    return real(*a, **k)
evaluate.predict = slow
from nasa_lens.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_sigterm_is_one_line_and_a_documented_code(data, tmp_path):
    (tmp_path / "slow.py").write_text(SLOW_EVAL)
    out = tmp_path / "o"
    proc = subprocess.Popen([sys.executable, str(tmp_path / "slow.py"), str(REPO), "eval", *TINY, "--data", str(data),
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "FORWARD"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143
    assert err.strip().splitlines()[-1] == "nasa-lens eval: terminated (SIGTERM); finished outputs are intact"
    assert "Traceback" not in err and not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ------------------------------------------------------------- --top 0, and progress bars under several ranks


@pytest.mark.parametrize("command", ["dla", "scan"])
def test_top_zero_names_the_flag(command, data, tmp_path, capsys, no_model):
    code, err = _run([command, *TINY, "--data", str(data), "--top", "0", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and err == f"nasa-lens {command}: error: top_k must be >= 1, got 0 (flag --top)"


@pytest.mark.parametrize(("rank", "bars"), [(0, True), (1, False)])
def test_only_the_writer_draws_the_bars_of_loops_every_rank_runs(rank, bars, tiny, questions, capsys, monkeypatch):
    """Under torchrun, path patching, the NASA steps and the mean-ablation reference run in full on every rank;
    rank 0 alone draws their bars (the logs showed one bar per rank, an idle rank's stuck at its start)."""
    from nasa_lens import parallel
    from nasa_lens.causal.patching import swap_pairs
    from nasa_lens.causal.paths import path_patch
    from nasa_lens.interventions import collect_z_reference
    from nasa_lens.prompts import PromptFormat

    monkeypatch.setattr(parallel, "world", lambda: parallel.World(rank=rank, size=2, initialised=True))
    path_patch(tiny, swap_pairs(questions[:2], PromptFormat()), [(0, 1)], [(1, 0)], vias=["q"], direct=False, progress=True)
    collect_z_reference(tiny, questions[:2], PromptFormat(), progress=True)
    err = capsys.readouterr().err
    assert ("path patching" in err and "z reference" in err) is bars and (bars or err == "")
