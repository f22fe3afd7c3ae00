"""Experiment behind docs/mechanism.md: which per-head score finds the heads that matter?

1. **Scores** on the StrategyQA *train* sample that ranks the heads of the ablation curve (200 label-balanced
   questions, seed 0): mean NAS (``after`` and ``last``) and DLA (total and ``via_no``) from ONE forward per
   batch (both NAS hook sets and the DLA hooks side by side), attribution patching (zero ablation, one
   forward + backward per batch), the OV copying score (weights only) and NAS x copying.
2. **Exact effects** on held-out *test* questions (``--n-sweep``, label-balanced, seed 0): every head
   zero-ablated alone (``nasa_lens.causal.effect_sweep``), the change of ``logit(Yes) - logit(No)``.
3. **Spearman** between each head's exact effect and each score, oriented so that a high score predicts a
   positive effect (removing the head moves the answer towards "Yes"): ``nas_after``, ``nas_last``,
   ``-dla_total``, ``-via_no``, ``nas_after x copying``, ``attribution``. 95% bootstrap intervals resample
   the questions of both samples (1000 draws); also the overlap of each score's top-16 with the exact top-16.
4. **Ablation curve** of the best score (``--n-curve`` test questions, k = 1, 2, 4, 8, 16, against random
   heads), beside the same curve for top-k NAS.
5. With ``--adapter``: DLA of the adapted model on the same 200 questions; the trained heads' ``via_no``
   before and after.
6. **Path patching** (stage ``paths``): senders = the heads with the most negative ``via_no``, receivers = the
   later heads with the largest ``|DLA|``, on ``--n-pairs`` swap pairs of test questions.
7. With ``--figures DIR``: the via_no heatmap, NAS vs via_no, the split bars and the path heatmaps.

Every stage caches its result under ``--out`` (rerun to reuse). Run under ``nice``:
``python experiments/mechanism.py [--n-scores 200] [--n-sweep 32] [--n-curve 64] [--adapter PATH]``
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("experiments.mechanism")

SCORES = ("nas_after", "nas_last", "neg_dla_total", "neg_via_no", "nas_x_copying", "attribution")


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy import stats

    return float(stats.spearmanr(x.reshape(-1), y.reshape(-1)).statistic)


def per_example_scores(scores_dir: Path) -> dict[str, np.ndarray]:
    """Per-example ``[example, layer, head]`` arrays of each oriented score (high = predicted positive effect)."""
    from nasa_lens import causal
    from nasa_lens.copying import CopyingResult
    from nasa_lens.dla import DLAResult
    from nasa_lens.nas import NASResult

    after, last = NASResult.load(scores_dir / "nas_after"), NASResult.load(scores_dir / "nas_last")
    dla = DLAResult.load(scores_dir / "dla")
    copying = CopyingResult.load(scores_dir / "copying").copying
    attr = causal.EffectSweepResult.load(scores_dir / "attribution", "effects_attribution")
    return {
        "nas_after": after.scores,
        "nas_last": last.scores,
        "neg_dla_total": -dla.total,
        "neg_via_no": -dla.source("via_no"),
        "nas_x_copying": after.scores * copying[None],
        "attribution": attr.per_example,
    }


def compare(scores: dict[str, np.ndarray], exact: np.ndarray | tuple[np.ndarray, np.ndarray, int], *, n_boot: int = 1000,
            seed: int = 0, top: int = 16) -> list[dict]:
    """Spearman of each score's per-head mean with the exact effect, with a 95% bootstrap CI.

    ``exact``: per-example effects ``[example, layer, head]`` (both samples' questions are resampled), or
    ``(mean, stderr, n)`` per head when only the summary is available (the score's questions are resampled and
    each head's effect is drawn from ``N(mean, stderr^2)``, independently per head)."""
    from nasa_lens.heads import ranked_heads

    rng = np.random.default_rng(seed)
    per_example = not isinstance(exact, tuple)
    eff = exact.mean(0) if per_example else exact[0]
    n_exact = len(exact) if per_example else exact[2]
    top_exact = set(ranked_heads(eff)[:top])
    rows = []
    for name, s in scores.items():
        rho = _spearman(s.mean(0), eff)
        boots = []
        for _ in range(n_boot):
            i = rng.integers(0, len(s), len(s))
            if per_example:
                e = exact[rng.integers(0, n_exact, n_exact)].mean(0)
            else:
                e = exact[0] + exact[1] * rng.standard_normal(exact[0].shape)
            boots.append(_spearman(s[i].mean(0), e))
        lo, hi = np.quantile(boots, [0.025, 0.975])
        overlap = len(set(ranked_heads(s.mean(0))[:top]) & top_exact)
        rows.append({"score": name, "spearman": rho, "ci_low": float(lo), "ci_high": float(hi),
                     f"top{top}_overlap": overlap, "n_score": len(s), "n_exact": n_exact})
    return rows


def effects_from_figure(path: str | Path, n_layers: int, n_heads: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``(effect, stderr, n)`` per head from the hover text of an effect heatmap written by
    ``nasa_lens.plots.causal.effect_heatmap`` ("head L.H<br>effect X<br>stderr Y<br>n N")."""
    import re

    text = Path(path).read_text(encoding="utf-8").replace("\\u003cbr\\u003e", "<br>")
    found = re.findall(r"head (\d+)\.(\d+)<br>effect ([-+0-9.e]+)<br>stderr ([-+0-9.e]+)<br>n (\d+)", text)
    mean, se = np.full((n_layers, n_heads), np.nan), np.full((n_layers, n_heads), np.nan)
    ns = set()
    for layer, head, e, s_, n in found:
        mean[int(layer), int(head)], se[int(layer), int(head)] = float(e), float(s_)
        ns.add(int(n))
    if np.isnan(mean).any() or len(ns) != 1:
        raise SystemExit(f"{path}: expected one effect per head ({n_layers} x {n_heads}) with one n, found {len(found)}")
    return mean, se, ns.pop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--data", default="strategyqa")
    ap.add_argument("--n-scores", type=int, default=200, help="train questions the scores are computed on")
    ap.add_argument("--n-attr", type=int, default=200, help="train questions for attribution patching (default: n-scores)")
    ap.add_argument("--n-sweep", type=int, default=32, help="test questions of the exact single-head sweep")
    ap.add_argument("--exact-from-figure", default=None,
                    help="skip the sweep: read each head's exact effect, stderr and n from the hover text of a committed "
                         "effect heatmap (figures/effect_sweep_exact_n16.html, written by experiments/causal_strategyqa.py)")
    ap.add_argument("--n-curve", type=int, default=64, help="test questions of the top-k ablation curves")
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8, 16], help="head counts of the curves")
    ap.add_argument("--seeds", type=int, default=3, help="random head sets per k in the curves")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--n-pairs", type=int, default=16, help="swap pairs (test questions) for path patching")
    ap.add_argument("--n-senders", type=int, default=3, help="path patching: senders = most negative via_no heads")
    ap.add_argument("--n-receivers", type=int, default=12, help="receivers = later heads with the largest |DLA|")
    ap.add_argument("--adapter", default=None, help="a NASA adapter: compare the trained heads' via_no")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stages", nargs="+", default=["scores", "sweep", "compare", "curve", "adapter", "paths"])
    ap.add_argument("--out", default="results/mechanism")
    ap.add_argument("--figures", default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    from nasa_lens import causal
    from nasa_lens.datasets import load_dataset
    from nasa_lens.copying import ov_copying
    from nasa_lens.dla import DLAResult, component_order, dla_for_batch
    from nasa_lens.models import load_model
    from nasa_lens.nas import NASResult, stack_layers, nas_hooks
    from nasa_lens.prompts import iter_batches

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(args.model)
    L, H = model.n_layers, model.n_heads
    train = load_dataset(args.data, split="train", limit=args.n_scores, seed=0)
    test_sweep = load_dataset(args.data, split="test", limit=args.n_sweep, seed=0)
    scores_dir = out / "scores"
    pd.set_option("display.width", 200)

    # ---------------------------------------------------------------- 1. scores
    if "scores" in args.stages and not (scores_dir / "dla" / "dla_scores.json").is_file():  # NAS (both modes) + DLA
        t0 = time.perf_counter()
        ex = list(train)
        n = len(ex)
        nas = {p: np.zeros((n, L, H)) for p in ("after", "last")}
        heads = np.zeros((n, L, H, 3))
        diff, labels, comps = np.zeros(n), np.zeros(n, dtype=int), {}
        for idx, batch in iter_batches(model, ex, None, args.batch_size):
            h_after, s_after = nas_hooks(batch, positions="after")
            h_last, s_last = nas_hooks(batch, positions="last")
            hd, c, d = dla_for_batch(model, batch, hooks=[*h_after, *h_last])
            nas["after"][idx] = stack_layers(s_after, range(L)).double().numpy()
            nas["last"][idx] = stack_layers(s_last, range(L)).double().numpy()
            heads[idx], diff[idx], labels[idx] = hd.numpy(), d.numpy(), batch.labels.numpy()
            for k, v in c.items():
                comps.setdefault(k, np.zeros(n))[idx] = v.numpy()
            log.info("scores: %d / %d", idx[-1] + 1 if idx else 0, n)
        ids = [e.id for e in ex]
        for p in ("after", "last"):
            NASResult(nas[p], ids, labels, positions=p, model=model.name, dataset=args.data,
                      kv_group=np.array([model.kv_group(h) for h in range(H)])).save(scores_dir / f"nas_{p}")
        names = component_order(model, list(comps))
        DLAResult(heads, np.column_stack([comps[c] for c in names]), names, diff, ids, labels, model=model.name,
                  dataset=args.data, kv_group=np.array([model.kv_group(h) for h in range(H)])).save(scores_dir / "dla")
        log.info("scores: NAS+DLA %.0f s", time.perf_counter() - t0)
    if "scores" in args.stages and not (scores_dir / "attribution" / "effects_attribution.npz").is_file():
        attr_data = train if args.n_attr >= args.n_scores else load_dataset(args.data, split="train", limit=args.n_attr, seed=0)
        res = causal.effect_sweep(model, attr_data, causal.EffectSweepConfig(method="attribution", positions="all", batch_size=args.batch_size),
                                  progress=False)
        res.save(scores_dir / "attribution")
        log.info("scores: attribution on %d questions, %.0f s", res.n, res.seconds)
    if not (scores_dir / "copying" / "copying.csv").is_file():
        ov_copying(model).save(scores_dir / "copying")
    dla = DLAResult.load(scores_dir / "dla")
    print(dla.summary(k=8))

    # ---------------------------------------------------------------- 2. exact sweep
    sweep_dir = out / f"sweep_n{args.n_sweep}"
    if "sweep" in args.stages and not args.exact_from_figure and not (sweep_dir / "effects_exact.npz").is_file():
        res = causal.effect_sweep(model, test_sweep, causal.EffectSweepConfig(method="exact", positions="all", batch_size=args.batch_size),
                                  progress=False)
        res.save(sweep_dir)
        log.info("exact sweep: %d questions, %.0f s", res.n, res.seconds)

    # ---------------------------------------------------------------- 3. compare
    best = None
    exact_arg, exact_desc = None, ""
    if args.exact_from_figure:
        mean, se, n_fig = effects_from_figure(args.exact_from_figure, L, H)
        exact_arg, exact_desc = (mean, se, n_fig), f"{n_fig} questions, read from {args.exact_from_figure}"
    elif (sweep_dir / "effects_exact.npz").is_file():
        exact = causal.EffectSweepResult.load(sweep_dir)
        exact_arg, exact_desc = exact.per_example, f"{exact.n} test questions, {exact.seconds:.0f} s"
    if "compare" in args.stages and exact_arg is not None:
        table = pd.DataFrame(compare(per_example_scores(scores_dir), exact_arg))
        table.to_csv(out / "score_vs_effect.csv", index=False)
        print(f"\n== Spearman of per-head scores ({args.n_scores} train questions) with the exact zero-ablation effect "
              f"({exact_desc})")
        print(table.to_string(index=False, float_format=lambda x: f"{x:+.3f}"))
        best = str(table.sort_values("spearman", ascending=False).iloc[0]["score"])
        print(f"best: {best}")
        (out / "best_score.txt").write_text(best + "\n")

    # ---------------------------------------------------------------- 4. curves
    if "curve" in args.stages and (out / "best_score.txt").is_file():
        best = (out / "best_score.txt").read_text().strip()
        scores = per_example_scores(scores_dir)
        test_curve = load_dataset(args.data, split="test", limit=args.n_curve, seed=0)
        for name in dict.fromkeys([best, "nas_after"]):
            folder = out / f"curve_{name}_n{args.n_curve}"
            if (folder / "curve.json").is_file():
                curve = causal.AblationCurveResult.load(folder)
            else:
                curve = causal.ablation_curve(model, test_curve, scores[name].mean(0), ks=tuple(args.ks), mode="zero",
                                              n_random_seeds=args.seeds, progress=False)
                curve.save(folder)
            print(f"\n== top-k by {name}, zero ablation, {len(curve.ids)} test questions, {curve.seconds:.0f} s")
            for metric in ("yes_rate", "mean_logit_diff"):
                print(f"-- {metric}\n{curve.summary_table(metric).to_string(index=False)}")

    # ---------------------------------------------------------------- 5. adapter
    if "adapter" in args.stages and args.adapter:
        from nasa_lens.adapters import read_adapter_meta
        from nasa_lens.dla import scan_dla
        from nasa_lens.adapters import load_adapter

        folder = out / "dla_adapter"
        if not (folder / "dla_scores.json").is_file():
            adapter = load_adapter(model, args.adapter)
            try:
                scan_dla(model, train, batch_size=args.batch_size, progress=False).save(folder)
            finally:
                adapter.remove()
        after = DLAResult.load(folder)
        meta = read_adapter_meta(args.adapter)
        trained = [tuple(int(x) for x in str(h).split(".")) for h in meta.get("heads", [])]
        rows = [{"head": f"{l_}.{h_}", "via_no_base": dla.mean("via_no")[l_, h_], "via_no_nasa": after.mean("via_no")[l_, h_],
                 "dla_base": dla.mean()[l_, h_], "dla_nasa": after.mean()[l_, h_]} for l_, h_ in trained]
        frame = pd.DataFrame(rows)
        frame.to_csv(out / "adapter_via_no.csv", index=False)
        print(f"\n== NASA adapter {args.adapter}: trained heads' via_no, base vs adapted ({after.n} train questions)")
        print(frame.to_string(index=False, float_format=lambda x: f"{x:+.4f}"))
        print(f"mean logit diff base {dla.logit_diff.mean():+.3f}, adapted {after.logit_diff.mean():+.3f}")
    # ---------------------------------------------------------------- 6. path patching
    if "paths" in args.stages:
        from nasa_lens.causal.paths import PathPatchingResult, path_patch
        from nasa_lens.heads import format_head, ranked_heads

        folder = out / f"paths_n{args.n_pairs}"
        if (folder / "paths.npz").is_file():
            paths = PathPatchingResult.load(folder)
        else:
            senders = dla.top_heads(args.n_senders, by="via_no")
            first = min(layer for layer, _ in senders)
            later = [h for h in ranked_heads(np.abs(dla.mean("total"))) if h[0] > first]
            receivers = sorted(later[: args.n_receivers])
            pairs = causal.swap_pairs(list(load_dataset(args.data, split="test", limit=args.n_pairs, seed=0)))
            paths = path_patch(model, pairs, senders, receivers, batch_size=args.batch_size, progress=False)
            paths.save(folder)
        frame = paths.to_dataframe()
        print(f"\n== path patching, {paths.kind} pairs (n={paths.n}), clean {paths.clean.mean():+.3f}, corrupted "
              f"{paths.corrupted.mean():+.3f}, {paths.seconds:.0f} s; senders {[format_head(h) for h in paths.senders]}")
        print(frame.reindex(frame.normalized.abs().sort_values(ascending=False).index).head(12)[
            ["sender", "receiver", "via", "normalized", "ci_low", "ci_high"]].to_string(index=False, float_format=lambda x: f"{x:+.3f}"))

    # ---------------------------------------------------------------- 7. figures
    if args.figures:
        from nasa_lens.plots import save_figure
        from nasa_lens.plots.dla import nas_vs_via_no, path_heatmap, split_bars, via_no_heatmap

        fig_dir = Path(args.figures)
        tag = f"{args.data}{dla.n}"
        nas_after = NASResult.load(scores_dir / "nas_after").mean
        save_figure(via_no_heatmap(dla), fig_dir / f"dla_via_no_{tag}", include_plotlyjs="directory")
        save_figure(nas_vs_via_no(nas_after, dla), fig_dir / f"dla_nas_vs_via_no_{tag}", include_plotlyjs="directory")
        save_figure(split_bars(dla, k=12), fig_dir / f"dla_split_bars_{tag}", include_plotlyjs="directory")
        paths_dir = out / f"paths_n{args.n_pairs}"
        if (paths_dir / "paths.npz").is_file():
            from nasa_lens.causal.paths import PathPatchingResult

            paths = PathPatchingResult.load(paths_dir)
            for via in ("q", "v"):
                save_figure(path_heatmap(paths, via), fig_dir / f"paths_{via}_{args.data}{paths.n}", include_plotlyjs="directory")
    (out / "args.json").write_text(json.dumps(vars(args), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
