"""Run under ``torchrun`` by tests/integration/test_parallel.py (not a test module itself).

``parallel_worker.py OUT CMD...``: every rank joins a gloo process group, then runs each ``;``-separated
nasa-lens command line inside it (``--out`` folders under OUT), the way ``torchrun -m nasa_lens.cli`` would.
The command ``nasa`` runs :func:`nasa_run` instead and rank 0 saves its outcome to ``OUT/nasa.pt``.
"""
from __future__ import annotations

import shlex
import sys

import torch
import torch.distributed as dist

torch.set_num_threads(1)


def nasa_run(checkpoint_dir=None):
    """A short NASA run on tiny-random (both loss terms, validation every 2 steps): the adapter tensors and
    the training history. The same call in one process is the reference."""
    from nasa_lens.datasets import load_dataset
    from nasa_lens.models import load_model
    from nasa_lens.finetune import NASAConfig, train_nasa

    model = load_model("tiny-random")
    train = load_dataset("arithmetic", limit=12, seed=0, split="train")
    val = load_dataset("arithmetic", limit=6, seed=1, split="test")
    cfg = NASAConfig(heads="top:2", steps=4, batch_size=6, lr=5e-3, lambda_nas=0.1, eval_every=2, eval_batch_size=4,
                     n_boot=20, progress=False, restore_best=False)
    result = train_nasa(model, train, val, cfg, checkpoint_dir=checkpoint_dir)
    return {"tensors": result.adapter.to_tensors(), "history": result.history, "heads": result.heads}


def main() -> int:
    out, script = sys.argv[1], " ".join(sys.argv[2:])
    dist.init_process_group("gloo")
    from nasa_lens.cli import main as cli_main

    try:
        for line in script.split(";"):
            if line.strip() == "nasa":
                got = nasa_run(checkpoint_dir=f"{out}/nasa_ckpt")
                if dist.get_rank() == 0:
                    torch.save(got, f"{out}/nasa.pt")
                continue
            code = cli_main(shlex.split(line.replace("{out}", out)))
            if code:
                return code
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
