"""A small study killed at random points (faults injected, SIGKILL) and rerun ends identical to an uninterrupted one."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


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
