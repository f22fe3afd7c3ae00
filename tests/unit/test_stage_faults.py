"""Faults and concurrency (issue #15, items 5 and 9): stage folders owned by their writer, one writer per
stage, a published stage verified complete, locks that fail fast with a clear message, stale temporaries
of killed writers removed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nasa_lens.io import FolderInUseError, atomic_path, file_lock, remove_stale_temporaries
from nasa_lens.study.stages import DONE_FILE, StageStore


def _slow_stage(calls: list[str], delay: float = 0.4):
    def fn(ctx):
        calls.append(threading.current_thread().name)
        (ctx.work / "a.txt").write_text("first file")
        time.sleep(delay)
        (ctx.work / "sub").mkdir()
        (ctx.work / "sub" / "b.txt").write_text("second file, written later")
        return {"n": 2}

    return fn


def test_two_writers_of_one_stage_compute_it_once(tmp_path: Path) -> None:
    """Two runs ask for the same stage at once: the second waits for the first and reuses its folder;
    neither deletes the other's partial folder, and the published stage holds every file."""
    store_a, store_b = StageStore(tmp_path, "v"), StageStore(tmp_path, "v")
    calls: list[str] = []
    results: dict[str, object] = {}

    def go(store, tag):
        try:
            results[tag] = store.run("s", {"a": 1}, [], _slow_stage(calls))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertions below
            results[tag] = exc

    threads = [threading.Thread(target=go, args=(s, t), name=t) for s, t in ((store_a, "A"), (store_b, "B"))]
    threads[0].start()
    time.sleep(0.1)
    threads[1].start()
    for t in threads:
        t.join(30)
    assert len(calls) == 1, calls
    a, b = results["A"], results["B"]
    assert not isinstance(a, BaseException) and not isinstance(b, BaseException), results
    assert {a.cached, b.cached} == {False, True} and a.path == b.path
    assert (a.path / "a.txt").is_file() and (a.path / "sub" / "b.txt").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no partial folder, no lock file


def test_done_json_lists_the_files_and_an_incomplete_stage_is_redone(tmp_path: Path) -> None:
    store = StageStore(tmp_path, "v")
    calls: list[str] = []
    out = store.run("s", {}, [], _slow_stage(calls, 0))
    files = json.loads((out.path / DONE_FILE).read_text())["files"]
    assert files == {"a.txt": len("first file"), "sub/b.txt": len("second file, written later")}
    assert store.run("s", {}, [], _slow_stage(calls, 0)).cached
    (out.path / "sub" / "b.txt").unlink()  # published without a file (what a deleting second run caused)
    again = store.run("s", {}, [], _slow_stage(calls, 0))
    assert not again.cached and len(calls) == 2 and (again.path / "sub" / "b.txt").is_file()
    (again.path / "a.txt").write_text("truncated")  # another size
    assert store.lookup("s", again.key) is None
    # a done.json without a file list (written before this check existed) is not trusted
    meta = json.loads((again.path / DONE_FILE).read_text())
    del meta["files"]
    (again.path / DONE_FILE).write_text(json.dumps(meta))
    assert store.lookup("s", again.key) is None


def test_partial_folder_of_a_live_writer_is_left_alone(tmp_path: Path) -> None:
    store = StageStore(tmp_path, "v")
    key = store.key("s", {})
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        theirs = tmp_path / f".{store.folder('s', key).name}.partial-{live.pid}-0123abcd"
        theirs.mkdir()
        (theirs / "x.txt").write_text("being written by a live process")
        dead = tmp_path / f".{store.folder('s', key).name}.partial-999999-deadbeef"
        dead.mkdir()
        store.run("s", {}, [], lambda ctx: {"ok": True})
        assert (theirs / "x.txt").is_file()  # not ours to delete
        assert not dead.exists()  # its writer is dead: stale
    finally:
        live.kill()
        live.wait()


def test_file_lock_fails_fast_naming_the_holder(tmp_path: Path) -> None:
    lock = tmp_path / ".lock"
    with file_lock(lock, what=f"study folder {tmp_path}"):
        with pytest.raises(FolderInUseError, match=rf"study folder {tmp_path} is in use by another nasa-lens run \(pid {os.getpid()}, since "):
            with file_lock(lock, wait=False, what=f"study folder {tmp_path}"):
                pass
    assert not lock.exists()
    with file_lock(lock, wait=False):  # free again
        pass


def test_lock_of_a_killed_holder_is_free(tmp_path: Path) -> None:
    lock = tmp_path / ".lock"
    code = (
        "import sys, os; sys.path.insert(0, sys.argv[2]); from nasa_lens.io import file_lock\n"
        "cm = file_lock(sys.argv[1]); cm.__enter__(); print('locked', flush=True); os._exit(9)"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(lock), str(Path(__file__).resolve().parents[2])], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "locked" and proc.returncode == 9
    with file_lock(lock, wait=False):  # the kernel released it with the process
        pass


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "x.json") as tmp:
        assert tmp.name.startswith(f".x.json.pid{os.getpid()}.") and tmp.name.endswith(".tmp")
        tmp.write_text("{}")
    dead = tmp_path / ".results.json.pid999999.abc123.tmp"
    dead.write_text("half")
    mine = tmp_path / f".report.md.pid{os.getpid()}.abc123.tmp"
    mine.write_text("being written")
    other = tmp_path / ".keep.tmp"
    other.write_text("not ours")
    assert remove_stale_temporaries(tmp_path) == [dead]
    assert mine.exists() and other.exists() and (tmp_path / "x.json").read_text() == "{}"


# ------------------------------------------------------------------------------------------------ killing a study

# A small study on tiny-random: every stage, a 4-step fine-tune checkpointed at every step.
SMALL_STUDY = {
    "models": ["tiny-random"],
    "batch_size": 8,
    "data": {"dataset": "arithmetic", "generalisation": [], "train_limit": 8, "test_limit": 8},
    "bias": {"n_boot": 50},
    "nas": {"top_k": 3},
    "conditions": {"formats": ["yes-no", "no-yes"], "datasets": [], "limit": 4, "top_k": 2},
    "ablation": {"ks": [1], "n_random": 1, "n_perm": 50},
    "finetune": {"heads": "top:2", "nasa": {"steps": 4, "batch_size": 4, "eval_every": 2, "checkpoint_every": 1}},
    "report": {"png": False, "top_k": 2},
}

# Runs in a fresh interpreter that imports torch and nasa-lens and loads tiny-random once (one thread, so no
# thread pool exists at the fork), then forks one child per study run (so each run costs no start-up): a child either dies at the N-th
# fault point (NASA_LENS_FAULT_AT=N: os._exit, no cleanup) or is SIGKILLed after a delay, or runs to the end.
RUNNER = r"""
import json, os, signal, sys, time
sys.path.insert(0, sys.argv[1])
os.environ.pop("NASA_LENS_FAULT_AT", None)
import torch
torch.set_num_threads(1)  # no thread pool in the parent: forking after torch work is safe
import nasa_lens.models
from nasa_lens import io
from nasa_lens.config import StudyConfig
from nasa_lens.study import run_study

model = nasa_lens.models.load_model("tiny-random")  # loaded once; every forked run gets its own copy
nasa_lens.models.load_model = lambda *args, **kwargs: model

cfg = StudyConfig().with_overrides(json.loads(sys.argv[2]))
out = []
for step in json.loads(sys.argv[3]):
    kind, value, folder = step
    pid = os.fork()
    if pid == 0:
        if kind == "fault":
            os.environ["NASA_LENS_FAULT_AT"] = str(value)
        elif kind == "count":
            os.environ["NASA_LENS_FAULT_AT"] = str(10**9)
        try:
            run_study(cfg, folder, figures_dir=os.path.join(folder, "figures"), progress=False)
        except BaseException as exc:
            os.write(2, f"run failed: {type(exc).__name__}: {exc}\n".encode())
            os._exit(1)
        if kind == "count":
            os.write(1, f"COUNT {io._fault_count}\n".encode())
        os._exit(0)
    status = None
    if kind == "kill":
        deadline = time.monotonic() + value
        while time.monotonic() < deadline:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
                break
            time.sleep(0.01)
        else:
            os.kill(pid, signal.SIGKILL)
    if status is None:
        _, status = os.waitpid(pid, 0)
    out.append(os.waitstatus_to_exitcode(status))
print("CODES", json.dumps(out), flush=True)
"""


def _run_chain(steps: list, tmp_path: Path) -> tuple[list[int], str]:
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(repo), json.dumps(SMALL_STUDY), json.dumps(steps)],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )
    assert proc.returncode == 0 and "CODES" in proc.stdout, proc.stderr[-4000:]
    codes = json.loads(proc.stdout.split("CODES", 1)[1])
    return codes, proc.stdout + proc.stderr


def _strays(folder: Path) -> list[str]:
    """Temporaries a run leaves behind: atomic-write .tmp files, .partial folders, lock files, checkpoints."""
    return sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*")
        if p.name.endswith(".tmp") or ".partial-" in p.name or p.name.endswith(".lock") or p.name == ".checkpoints"
    )


@pytest.mark.slow
def test_study_killed_at_random_points_ends_identical(tmp_path: Path) -> None:
    """Kill a study at random points, several seeds: at the N-th fault point (before or inside an atomic write,
    before a stage is published: os._exit, nothing cleaned up) or by SIGKILL after a random delay; rerun
    after each kill. Every chain ends, after a last uninterrupted run, with results.json byte-identical to
    an uninterrupted run, and no temporaries anywhere in the folder."""
    import random

    reference = tmp_path / "reference"
    codes, log = _run_chain([["count", 0, str(reference)]], tmp_path)
    assert codes == [0], log
    n_points = int(log.split("COUNT", 1)[1].split()[0])
    assert n_points > 20, n_points  # the run passes many fault points: the draws below cover the whole run
    steps, chains = [], {}
    for seed in range(3):
        rng = random.Random(seed)
        folder = tmp_path / f"seed{seed}"
        chain = [["fault", rng.randint(1, n_points // 2), str(folder)] for _ in range(3)]
        chain.insert(rng.randint(0, 3), ["kill", round(rng.uniform(1.0, 6.0), 2), str(folder)])
        chain.append(["clean", 0, str(folder)])
        chains[seed] = (len(steps), len(steps) + len(chain))
        steps += chain
    codes, log = _run_chain(steps, tmp_path)
    want = (reference / "results.json").read_bytes()
    for seed, (lo, hi) in chains.items():
        folder = tmp_path / f"seed{seed}"
        assert codes[hi - 1] == 0, (seed, codes[lo:hi], log[-3000:])
        assert 86 in codes[lo:hi - 1], (seed, codes[lo:hi])  # at least one injected fault fired
        assert (folder / "results.json").read_bytes() == want, seed
        assert _strays(folder) == [], (seed, _strays(folder))
