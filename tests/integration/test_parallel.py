"""Data parallelism (nasa_lens.parallel): sharding, and 2-process torchrun runs on tiny-random compared with one
process. Each torchrun launch costs a few seconds of imports, so one launch runs several commands."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from nasa_lens import parallel
from nasa_lens.parallel import ParallelError, shard
from nasa_lens.vocab import NasaLensError

ROOT = Path(__file__).resolve().parents[2]
DATA = "--model tiny-random --data arithmetic --limit 10 --batch-size 3"
COMMANDS = {
    "scan": f"scan {DATA} --no-png --out {{out}}/scan",
    "eval": f"eval {DATA} --out {{out}}/eval",
    "ablate": f"ablate {DATA} --heads 0.1,1.2 --mode mean --out {{out}}/ablate",
    "patch": f"patch {DATA} --no-png --out {{out}}/patch",
    "dla": f"dla {DATA} --no-png --out {{out}}/dla",
    "sweep": f"sweep {DATA} --mode mean --no-png --out {{out}}/sweep",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], nproc: int = 2, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", "--nnodes=1",
           "--master-addr=127.0.0.1", f"--master-port={free_port()}", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def one_thread():
    """torchrun workers run with one thread; the reference does too (so kernels reduce in the same order)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------------ unit


def test_shard_contiguous_covers_in_order():
    parts = [shard(10, rank=r, size=3) for r in range(3)]
    assert parts == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]


def test_shard_keeps_batches_whole():
    plan = [[4, 0, 2], [1, 3, 5], [6, 7, 8], [9]]
    parts = [shard(10, groups=plan, rank=r, size=2) for r in range(2)]
    assert parts == [[4, 0, 2, 1, 3, 5], [6, 7, 8, 9]]
    assert sorted(parts[0] + parts[1]) == list(range(10))


def test_more_ranks_than_examples_is_a_user_error():
    with pytest.raises(ParallelError, match="3 processes but only 2 examples") as info:
        shard(2, rank=0, size=3)
    assert isinstance(info.value, NasaLensError)


def test_single_process_is_a_no_op():
    w = parallel.world()
    assert (w.rank, w.size, w.parallel) == (0, 1, False) and parallel.is_writer()
    assert parallel.gather_examples(np.arange(3), [0, 1, 2], 3).tolist() == [0, 1, 2]


# ------------------------------------------------------------------------------------------------ torchrun


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """The commands in one process and under a 2-process torchrun (one launch), with the in-process exit codes
    (checked by a test, not here: a fixture's assert reports as an error)."""
    from nasa_lens.cli import main

    one, two = tmp_path_factory.mktemp("one"), tmp_path_factory.mktemp("two")
    with one_thread():
        codes = {name: main(line.replace("{out}", str(one)).split()) for name, line in COMMANDS.items()}
    proc = torchrun([str(Path(__file__).with_name("parallel_worker.py")), str(two), ";".join([*COMMANDS.values(), "nasa"])])
    return one, two, proc, codes


@pytest.fixture()
def runs(launched):
    return launched[:3]


def test_commands_exit_0_in_one_process_and_under_torchrun(launched):
    _, _, proc, codes = launched
    assert codes == dict.fromkeys(COMMANDS, 0)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_torchrun_scan_equals_one_process_bitwise(runs):
    one, two, _ = runs
    a, b = np.load(one / "scan" / "nas_scores.npz"), np.load(two / "scan" / "nas_scores.npz")
    assert set(a.files) == set(b.files)
    for key in a.files:
        assert np.array_equal(a[key], b[key], equal_nan=True), key
    for name in ("nas.csv", "nas_scores.json"):
        assert (one / "scan" / name).read_bytes() == (two / "scan" / name).read_bytes(), name
    assert sorted(p.name for p in (one / "scan").iterdir()) == sorted(p.name for p in (two / "scan").iterdir())


@pytest.mark.parametrize("command", ["eval", "ablate", "patch", "dla"])
def test_torchrun_files_equal_one_process(runs, command):
    """Per-example values bitwise equal (same batches, one thread), so every file is byte-identical,
    bootstrap intervals included (computed after the gather from all examples)."""
    one, two, _ = runs
    names = sorted(p.name for p in (one / command).iterdir() if not p.name.endswith((".html", ".png")))
    assert names and names == sorted(p.name for p in (two / command).iterdir() if not p.name.endswith((".html", ".png")))
    for name in names:
        assert (one / command / name).read_bytes() == (two / command / name).read_bytes(), f"{command}/{name}"
    if command == "eval":
        frame = pd.read_csv(two / command / "predictions.csv")
        assert len(frame) == 10 and frame["p_yes"].notna().all()
        assert json.loads((two / command / "metrics.json").read_text())["n"] == 10


def test_torchrun_sweep_equals_one_process(runs):
    """nasa-lens sweep (the suffix runner, whole batches per rank): effects byte-identical to one process."""
    one, two, _ = runs
    for name in ("effects.csv", "effects_by_example.csv"):
        assert (one / "sweep" / name).read_bytes() == (two / "sweep" / name).read_bytes(), name
    a, b = (json.loads((d / "sweep" / "sweep.json").read_text()) for d in (one, two))
    assert (a.pop("world_size"), b.pop("world_size")) == (1, 2)
    a.pop("seconds"), b.pop("seconds")
    assert a == b and a["n"] == 10
    assert len(pd.read_csv(two / "sweep" / "effects.csv")) == 8  # tiny-random: 2 layers x 4 heads
    assert not (two / "sweep" / "sweep.partial").exists()


def test_torchrun_cli_entry_and_rank_errors(tmp_path):
    """The real entry point (`torchrun -m nasa_lens.cli`, which initialises the process group itself) runs a
    eval; two ranks on one example fail with the clear error and write nothing."""
    ok = torchrun(["-m", "nasa_lens.cli", "eval", "--model", "tiny-random", "--data", "arithmetic", "--limit", "4",
                   "--batch-size", "2", "--out", str(tmp_path / "ok")])
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert (tmp_path / "ok" / "predictions.csv").is_file()
    assert ok.stdout.count("wrote ") == 1  # rank 0 prints, rank 1 stays quiet
    bad = torchrun(["-m", "nasa_lens.cli", "eval", "--model", "tiny-random", "--data", "arithmetic", "--limit", "1",
                    "--out", str(tmp_path / "bad")], nproc=2)
    assert bad.returncode != 0
    assert "2 processes but only 1 examples" in bad.stderr
    assert "exitcode  : 2" in bad.stderr or "exit code 2" in bad.stderr.lower()
    assert not (tmp_path / "bad").exists()


def test_torchrun_nasa_equals_one_process(runs):
    """Two ranks, each half of every global batch of 6, gradients summed after weighting each rank's loss by
    its share: the adapter after 4 steps equals one process with the same global batches to 1e-5 (not
    bitwise: a half batch is padded differently), and so does the logged history."""
    sys.path.insert(0, str(Path(__file__).parent))
    from parallel_worker import nasa_run

    _, two, _ = runs
    got = torch.load(two / "nasa.pt", weights_only=False)
    with one_thread():
        ref = nasa_run()
    assert got["heads"] == ref["heads"]
    assert got["tensors"].keys() == ref["tensors"].keys()
    moved = 0.0
    for key, value in ref["tensors"].items():
        torch.testing.assert_close(got["tensors"][key], value, atol=1e-5, rtol=0)
        moved = max(moved, float(value.abs().max()))
    assert moved > 0  # the deltas did train
    a = pd.DataFrame(got["history"]).set_index(["step", "split", "metric"])["value"]
    b = pd.DataFrame(ref["history"]).set_index(["step", "split", "metric"])["value"]
    assert a.index.equals(b.index)
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), atol=1e-5, rtol=1e-5, equal_nan=True)
    assert (two / "nasa_ckpt" / "checkpoint.pt").is_file()  # written once, by rank 0
