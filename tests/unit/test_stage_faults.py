"""Faults and concurrency of the study's stages: stage folders owned by their writer, one writer per stage, a
published stage verified complete, locks that fail fast with a clear message, stale temporaries of killed
writers removed. (From issue #15's review; a study killed at random points and rerun is
tests/integration/test_stage_faults.py.)"""
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
