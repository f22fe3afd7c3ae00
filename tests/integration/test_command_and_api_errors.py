"""Bad input under torchrun (two CPU ranks): one line from rank 0, exit 2, nothing left behind (cases from
issue #23's hostile-input review)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from unit.test_command_and_api_errors import REPO, TINY


# --------------------------------------------------------------------------------------------------- torchrun


def _torchrun(args: list[str], cwd: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", "--nnodes=1",
           "--master-addr=127.0.0.1", f"--master-port={port}", "-m", "nasa_lens.cli", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_torchrun_input_error_is_one_line_from_rank_0(tmp_path):
    proc = _torchrun(["eval", *TINY, "--data", "arithmetic", "--limit", "0", "--out", str(tmp_path / "o")], tmp_path)
    ours = [line for line in proc.stderr.splitlines() if line.startswith("nasa-lens ")]
    assert ours == ["nasa-lens eval: error: limit must be > 0 (or None for all examples), got 0"], proc.stderr[-3000:]
    assert proc.returncode == 1 and "exitcode  : 2" in proc.stderr  # torchrun's own code; each rank's is 2
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_torchrun_study_is_refused_in_one_line_leaving_nothing(tmp_path):
    out = tmp_path / "study"
    proc = _torchrun(["study", "--quick", *TINY, "--out", str(out)], tmp_path)
    ours = [line for line in proc.stderr.splitlines() if line.startswith("nasa-lens ")]
    assert len(ours) == 1 and ours[0].startswith("nasa-lens study: error: study runs as one process, not under torchrun"), proc.stderr[-3000:]
    assert list(tmp_path.iterdir()) == []  # no folder, no .lock, no stages
