"""GPU check: the library on every CUDA device here, compared with the CPU, with throughput and peak memory.

On each CUDA device (and, with two or more, once more with the model spread over all of them by
``device_map="auto"``), in float32 and in bfloat16, on SmolLM2 (default) and the same questions:

* ``eval``   : ``p_yes`` per question (:func:`nasa_lens.evaluate.evaluate`);
* ``scan``   : NAS of every head per question (:func:`nasa_lens.nas.scan_nas`);
* ``dla``    : direct logit attribution per head (:func:`nasa_lens.dla.scan_dla`, when that module exists);
* ``ablate`` : ``p_yes`` with the top-4 NAS heads zero-ablated (:func:`nasa_lens.causal.ablate`);
* ``nasa``   : a few NASA steps on the top-4 heads (:func:`nasa_lens.finetune.train_nasa`), the adapter deltas.

Each is compared with the same computation on the CPU in float32 (the reference), and timed (questions per
second; ``torch.cuda.synchronize`` before the clock stops) with the peak GPU memory
(``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``).

Tolerances (max absolute difference against the CPU float32 reference; TF32 is switched off so float32 matmuls
are float32). These are our expectations, stated before any GPU run:

* float32 : p_yes 1e-4, NAS 1e-3, DLA 1e-3, ablated p_yes 1e-4, NASA deltas 1e-4 (different kernels, same precision);
* bfloat16: p_yes 0.05, ablation effect (ablated - clean p_yes) 0.05, NAS and DLA: Spearman rho of the per-head
  means >= 0.95 (bfloat16 keeps ~3 significant digits, so values are compared by rank), NASA: finite loss and
  deltas within 25% (relative L2) of the reference.

Exit code 0 when every check passes (or there is no GPU: one line says so and nothing runs), 1 otherwise.

    python benchmarks/gpu_check.py                      # SmolLM2, 32 questions
    python benchmarks/gpu_check.py --model tiny-random  # seconds: a smoke test of the script itself
    make gpu-check
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np

TOL_F32 = {"p_yes": 1e-4, "nas": 1e-3, "dla": 1e-3, "ablate": 1e-4, "nasa": 1e-4}
TOL_BF16 = {"p_yes": 0.05, "ablate": 0.05, "rho": 0.95, "nasa_rel": 0.25}


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a.ravel())).astype(float)
    rb = np.argsort(np.argsort(b.ravel())).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def run_all(model: Any, data: list, args: argparse.Namespace, heads: str) -> dict[str, Any]:
    """Every computation on ``model``; per-step seconds and outputs."""
    import torch

    from nasa_lens import causal
    from nasa_lens.evaluate import evaluate
    from nasa_lens.finetune import NASAConfig, train_nasa
    from nasa_lens.nas import scan_nas

    def sync() -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    out: dict[str, Any] = {"seconds": {}}

    def timed(name: str, fn):
        sync()
        t0 = time.perf_counter()
        value = fn()
        sync()
        out["seconds"][name] = time.perf_counter() - t0
        return value

    out["p_yes"] = timed("eval", lambda: evaluate(model, data, batch_size=args.batch_size, n_boot=1, progress=False)).p_yes
    out["nas"] = timed("scan", lambda: scan_nas(model, data, batch_size=args.batch_size, progress=False)).scores
    try:
        from nasa_lens.dla import scan_dla
    except ImportError:
        out["dla"] = None
    else:
        out["dla"] = timed("dla", lambda: scan_dla(model, data, batch_size=args.batch_size, progress=False)).heads
    cfg = causal.AblationConfig(heads=heads, n_boot=1, batch_size=args.batch_size)
    ab = timed("ablate", lambda: causal.ablate(model, data, cfg, progress=False))
    out["ablate"], out["clean"] = ab.after.p_yes, ab.before.p_yes
    ncfg = NASAConfig(heads=heads, steps=args.nasa_steps, batch_size=8, lr=2e-3, progress=False, eval_every=0)
    result = timed("nasa", lambda: train_nasa(model, data, None, ncfg))
    out["nasa"] = {k: v.detach().float().cpu() for k, v in result.adapter.to_tensors().items()}
    out["nasa_loss"] = [r["value"] for r in result.history if r["metric"] == "loss"]
    return out


def compare(ref: dict[str, Any], got: dict[str, Any], dtype: str) -> list[tuple[str, str, bool]]:
    """(check, measured, passed) rows."""
    import torch

    rows = []
    if dtype == "float32":
        for key in ("p_yes", "nas", "dla", "ablate"):
            if ref.get(key) is None or got.get(key) is None:
                continue
            d = float(np.nanmax(np.abs(ref[key] - got[key])))
            rows.append((f"{key} max|diff| <= {TOL_F32[key]:g}", f"{d:.2e}", d <= TOL_F32[key]))
        d = max(float((ref["nasa"][k] - got["nasa"][k]).abs().max()) for k in ref["nasa"])
        rows.append((f"nasa deltas max|diff| <= {TOL_F32['nasa']:g}", f"{d:.2e}", d <= TOL_F32["nasa"]))
        return rows
    d = float(np.nanmax(np.abs(ref["p_yes"] - got["p_yes"])))
    rows.append((f"p_yes max|diff| <= {TOL_BF16['p_yes']:g}", f"{d:.3f}", d <= TOL_BF16["p_yes"]))
    e = float(np.nanmax(np.abs((ref["ablate"] - ref["clean"]) - (got["ablate"] - got["clean"]))))
    rows.append((f"ablation effect max|diff| <= {TOL_BF16['ablate']:g}", f"{e:.3f}", e <= TOL_BF16["ablate"]))
    for key in ("nas", "dla"):
        if ref.get(key) is None or got.get(key) is None:
            continue
        rho = _spearman(np.nanmean(ref[key], 0), np.nanmean(got[key], 0))
        rows.append((f"{key} per-head mean Spearman >= {TOL_BF16['rho']:g}", f"{rho:.3f}", rho >= TOL_BF16["rho"]))
    num = sum(float((ref["nasa"][k] - got["nasa"][k]).norm() ** 2) for k in ref["nasa"]) ** 0.5
    den = sum(float(ref["nasa"][k].norm() ** 2) for k in ref["nasa"]) ** 0.5
    rel = num / max(den, 1e-12)
    finite = all(np.isfinite(got["nasa_loss"]))
    rows.append((f"nasa loss finite, deltas rel. L2 <= {TOL_BF16['nasa_rel']:g}", f"{rel:.3f}", finite and rel <= TOL_BF16["nasa_rel"]))
    del torch
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--data", default="arithmetic")
    p.add_argument("--limit", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--nasa-steps", type=int, default=3)
    args = p.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print(f"gpu-check: SKIPPED - no CUDA device on this machine (torch {torch.__version__}, "
              f"torch.cuda.is_available() is False); nothing was run, nothing was compared.")
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    from nasa_lens.datasets import load_dataset
    from nasa_lens.models import load_model
    from nasa_lens.nas import scan_nas

    data = list(load_dataset(args.data, limit=args.limit, seed=0))
    print(f"gpu-check: {args.model} on {len(data)} {args.data} questions, batch {args.batch_size}; "
          f"{torch.cuda.device_count()} CUDA device(s): "
          + ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())))
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cpu = load_model(args.model, device="cpu")
    top = scan_nas(cpu, data, batch_size=args.batch_size, progress=False).mean
    order = np.argsort(-top.ravel(), kind="stable")[:4]
    heads = ",".join(f"{i // top.shape[1]}.{i % top.shape[1]}" for i in order)
    ref = run_all(cpu, data, args, heads)
    del cpu
    n = len(data)
    print(f"CPU float32 reference: " + "  ".join(f"{k} {n / s:.1f} q/s" for k, s in ref["seconds"].items() if k != "nasa"))
    placements = [(f"cuda:{i}", {"device": f"cuda:{i}"}) for i in range(torch.cuda.device_count())]
    if torch.cuda.device_count() > 1:
        placements.append(("auto over all GPUs", {"device_map": "auto"}))
    ok = True
    for where, placement in placements:
        for dtype_name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
            for i in range(torch.cuda.device_count()):
                torch.cuda.reset_peak_memory_stats(i)
            model = load_model(args.model, dtype=dtype, **placement)
            dtypes = {str(t.dtype) for t in model.bridge.parameters() if t.is_floating_point()}
            devices = {t.device.type for t in model.bridge.parameters()}
            if dtypes != {str(dtype)} or devices != {"cuda"}:
                ok = False
                print(f"\n{where}, {dtype_name}: FAIL  the model's weights are {sorted(dtypes)} on {sorted(devices)}, "
                      f"not {dtype} on CUDA (load_model did not honour dtype/device)")
                continue
            run_all(model, data[: args.batch_size], args, heads)  # warm-up (kernels, allocator)
            for i in range(torch.cuda.device_count()):
                torch.cuda.reset_peak_memory_stats(i)
            got = run_all(model, data, args, heads)
            peak = sum(torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count())) / 2**20
            speed = "  ".join(f"{k} {n / s:.1f} q/s" for k, s in got["seconds"].items() if k != "nasa")
            print(f"\n{where}, {dtype_name}: {speed}  nasa {args.nasa_steps} steps {got['seconds']['nasa']:.2f} s  "
                  f"peak GPU memory {peak:.0f} MiB")
            for check, measured, passed in compare(ref, got, dtype_name):
                ok &= passed
                print(f"  {'PASS' if passed else 'FAIL'}  {check:48s} {measured}")
            del model
            torch.cuda.empty_cache()
    print("\ngpu-check: " + ("all checks passed" if ok else "SOME CHECKS FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
