"""Whole studies: killed during the fine-tune and resumed to the same results; the Gemma 3 built-in."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unit.test_study import REPO, tiny_study, write_toml  # tiny_study: a fixture


def _close(a, b, path="") -> None:
    """Recursive equality, floats to 1e-6 (relative)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), (path, a, b)
    else:
        assert a == b, (path, a, b)


def _study_cmd(config: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "nasa_lens.cli", "-v", "study", "--config", str(config), "--out", str(out / "run"),
            "--figures", str(out / "figures"), "--no-progress"]


@pytest.mark.slow  # two more full studies in fresh processes
def test_killed_during_finetune_resumes_to_the_same_results(tiny_study, tmp_path: Path) -> None:
    """Kill the study (SIGKILL) once the fine-tune has written a checkpoint; the rerun resumes from it and
    ends with the same results.json as an uninterrupted run of the same command. The reference is a fresh
    process like the killed and resumed ones (the in-process fixture ran after hundreds of other tests in the
    same interpreter, and once differed from a fresh process in the last float32 bit of a logit difference in
    the full suite, never when run alone)."""
    cfg, _ = tiny_study
    config = write_toml(tmp_path / "tiny.toml", cfg)
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    log = open(tmp_path / "first.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(_study_cmd(config, out), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    checkpoints = out / "run" / "stages" / ".checkpoints"
    deadline = time.monotonic() + 300
    try:
        while not list(checkpoints.glob("finetune*/checkpoint.pt")):
            assert proc.poll() is None, f"the study ended before the fine-tune checkpoint: {(tmp_path / 'first.log').read_text()[-3000:]}"
            assert time.monotonic() < deadline, "no fine-tune checkpoint within 300 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert proc.returncode == -signal.SIGKILL
    stages = out / "run" / "stages"
    assert not list(stages.glob("finetune*/done.json")), "the fine-tune finished before the kill: make it longer"
    assert list(stages.glob("nas_*/done.json")) and not (out / "run" / "results.json").exists()

    second = subprocess.run(_study_cmd(config, out), cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "stage nas@tiny-random: cached" in second.stderr  # earlier stages were not redone
    assert "resumed from" in second.stderr  # the fine-tune continued from its checkpoint
    assert not (stages / ".checkpoints").exists()
    assert [p.name for p in stages.iterdir() if p.name.startswith(".")] == []
    resumed = json.loads((out / "run" / "results.json").read_text())
    clean = tmp_path / "clean"
    third = subprocess.run(_study_cmd(config, clean), cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert third.returncode == 0, third.stderr[-3000:]
    _close(resumed, json.loads((clean / "run" / "results.json").read_text()))


# ============================================================================================ Gemma 3 (slow)


@pytest.mark.slow
def test_gemma3_builtin_uses_plain_prompts_and_matches_hugging_face() -> None:
    import torch

    from nasa_lens.evaluate import answer_logits
    from nasa_lens.models import list_models, load_model
    from nasa_lens.prompts import PromptFormat, build_batch

    assert "gemma3-270m" in {r["name"] for r in list_models()}
    model = load_model("gemma3-270m")
    assert (model.n_layers, model.n_heads, model.n_kv_heads, model.d_head, model.chat) == (18, 4, 1, 256, False)
    batch = build_batch(model, ["Is Paris in France?", "Is 7 greater than 9?"], PromptFormat())
    assert batch.texts[0] == "Is Paris in France?\nAnswer with Yes or No.\nAnswer:"
    tok = model.tokenizer
    assert (tok.decode([batch.answer_yes_id]), tok.decode([batch.answer_no_id])) == (" Yes", " No")
    assert tok.decode([int(batch.input_ids[0, batch.pos_yes[0]])]) == " Yes"
    assert tok.decode([int(batch.input_ids[0, batch.pos_no[0]])]) == " No"
    ours = answer_logits(model, batch)
    with torch.no_grad():
        hf = model.bridge.original_model(batch.input_ids, attention_mask=batch.attention_mask).logits[:, -1]
    ref = hf[:, [batch.answer_yes_id, batch.answer_no_id]].float()
    assert torch.allclose(ours, ref, atol=1e-3), (ours, ref)
    assert bool((ours[0, 0] > ours[0, 1]).item())  # "Is Paris in France?" -> Yes
