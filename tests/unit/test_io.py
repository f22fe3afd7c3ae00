"""Files: the cache folder, atomic files and folders, strict JSON."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from nasa_lens.io import atomic_dir, atomic_path, cache_dir, read_json, write_json, write_text


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NASA_LENS_CACHE", str(tmp_path / "nl"))
    assert cache_dir("a", "b") == tmp_path / "nl" / "a" / "b" and (tmp_path / "nl" / "a" / "b").is_dir()
    monkeypatch.delenv("NASA_LENS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "nasa-lens"


def test_write_json_is_strict_and_reads_back(tmp_path):
    obj = {"a": 1.5, "nan": float("nan"), "inf": [float("inf"), -math.inf], "np": np.float64(2.0), "arr": (1, 2)}
    path = write_json(tmp_path / "x.json", obj)
    text = path.read_text()
    assert text == json.dumps({"a": 1.5, "nan": None, "inf": [None, None], "np": 2.0, "arr": [1, 2]}, indent=2) + "\n"
    assert read_json(path) == {"a": 1.5, "nan": None, "inf": [None, None], "np": 2.0, "arr": [1, 2]}


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = write_text(tmp_path / "f.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_atomic_dir_replaces_a_folder_only_on_success(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.")
        (tmp / "a.txt").write_text("1")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    with pytest.raises(ValueError):
        with atomic_dir(target) as tmp:
            (tmp / "b.txt").write_text("2")
            raise ValueError("interrupted")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]  # the old folder, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left
    with atomic_dir(target, work=tmp_path / ".out.partial-1") as tmp:
        assert tmp == tmp_path / ".out.partial-1"
        (tmp / "c.txt").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["c.txt"]  # replaced as a whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_files_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        path = write_text(tmp_path / "u.txt", "x")
    finally:
        os.umask(old)
    # nasa_lens.io read the umask at import time; the file mode follows that umask, not mkstemp's 0600
    from nasa_lens import io

    assert path.stat().st_mode & 0o777 == 0o666 & ~io._UMASK


def test_write_csv_gz_is_byte_stable_and_round_trips(tmp_path):
    """The same frame gives the same bytes whatever the time and the target's name (no name or time in the
    gzip header), and reads back equal."""
    import gzip
    import time

    import pandas as pd

    from nasa_lens.io import write_csv_gz

    frame = pd.DataFrame({"id": ["a", "b"], "x": [0.1234567, -2.0]})
    write_csv_gz(tmp_path / "one.csv.gz", frame)
    time.sleep(1.1)
    write_csv_gz(tmp_path / "two.csv.gz", frame)
    one, two = (tmp_path / "one.csv.gz").read_bytes(), (tmp_path / "two.csv.gz").read_bytes()
    assert one == two and one[:2] == b"\x1f\x8b"
    assert gzip.decompress(one).decode() == "id,x\na,0.123457\nb,-2\n"
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "one.csv.gz"), frame.assign(x=[0.123457, -2.0]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.csv.gz", "two.csv.gz"]  # no temporary left
