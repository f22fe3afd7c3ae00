"""Experiment behind the README's NASA table: NASA against its baselines, before/after, on SmolLM2.

Training data: label-balanced samples of the StrategyQA and GSM8K-verification *train* splits, mixed; 20% is
held out for validation (early stopping, best-step restore). Every trained method (NASA on the top-K NAS
heads, as many random heads, all heads' query and key rows) gets the same data, config and step budget; the
``threshold`` baseline fits a decision threshold on ``p_yes`` and trains nothing. Every method is evaluated
on the *test* splits of both training datasets, on BoolQ and on built-in arithmetic questions (never trained
on), with the general-ability checks (LM loss on a neutral text, next-token arithmetic), the NAS of the
trained heads before/after, trainable parameter counts and wall time (`nasa_lens.debias.compare_methods`).

Writes ``OUT/comparison.{csv,json}``, ``OUT/adapters/<method>/``, ``OUT/table.md`` and figures
``FIGURES/nasa_methods.*``, ``FIGURES/nasa_nas_change.*``, ``FIGURES/nasa_training_curve.*``.

Run: ``python experiments/nasa_comparison.py [--steps 150] [--heads top:8] [--lambda-nas 0]``
(about 30 minutes for SmolLM2 on 2 idle CPU cores with the defaults).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("experiments.nasa_comparison")


def markdown_table(frame) -> str:
    """A pandas frame as a GitHub markdown table (no tabulate dependency)."""
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--train", nargs="+", default=["strategyqa", "gsm8k-verify"])
    ap.add_argument("--unseen", nargs="+", default=["boolq", "arithmetic"])
    ap.add_argument("--n-train", type=int, default=200, help="label-balanced train-split examples per training dataset")
    ap.add_argument("--n-val", type=int, default=48, help="validation examples (held out of the training sample)")
    ap.add_argument("--n-test", type=int, default=200, help="test-split examples per training dataset")
    ap.add_argument("--n-unseen", type=int, default=96, help="examples per unseen dataset (the built-in arithmetic test split has 49 yes)")
    ap.add_argument("--heads", default="top:8")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--lambda-nas", type=float, default=0.0)
    ap.add_argument("--methods", nargs="+", default=["base", "threshold", "nasa", "random", "all"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="results/nasa_comparison")
    ap.add_argument("--figures", default="figures")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import torch

    torch.set_num_threads(args.threads)
    from nasa_lens.datasets import load_dataset, load_datasets
    from nasa_lens.io import atomic_path
    from nasa_lens.models import load_model
    from nasa_lens.debias import compare_methods
    from nasa_lens.nas import scan_nas
    from nasa_lens.finetune import NASAConfig, holdout_split
    from nasa_lens.plots import save_figure
    from nasa_lens.plots.finetune import method_comparison, nas_change_heatmap, training_curves

    model = load_model(args.model)
    examples = load_datasets(args.train, split="train", limit=args.n_train, seed=0)  # ids prefixed "name:"
    train, val = holdout_split(examples, 0.2, seed=0)
    val = val[: args.n_val]
    eval_sets = {f"{name}-test": list(load_dataset(name, split="test", limit=args.n_test, seed=0)) for name in args.train}
    for name in args.unseen:
        eval_sets[name] = list(load_dataset(name, split="test", limit=args.n_unseen, seed=0))
    log.info("train %d, validation %d; evaluation sets %s", len(train), len(val), {k: len(v) for k, v in eval_sets.items()})

    ranking = scan_nas(model, train[:64], progress=False)  # the heads NASA trains: top-K on training questions
    config = NASAConfig(heads=args.heads, steps=args.steps, lr=args.lr, lambda_nas=args.lambda_nas, n_boot=200)
    comparison = compare_methods(model, train, eval_sets, config, val=val, methods=args.methods, ranking=ranking.mean,
                                 nas_sets=[next(iter(eval_sets))], nas_limit=64)
    out = Path(args.out)
    comparison.save(out)  # comparison.csv, comparison.json, each fitted method (adapters) under methods/
    table = comparison.table(("pr_gap", "recall", "yes_rate", "accuracy", "auroc"), with_ci=True)
    with atomic_path(out / "table.md") as tmp:
        Path(tmp).write_text(markdown_table(table))
    print(table.to_string(index=False))
    long = comparison.to_dataframe()
    general = long[long.metric.isin(["lm_loss", "arith_accuracy", "nas_heads_before", "nas_heads_after"])]
    print(general.pivot_table(index="method", columns="metric", values="value").round(3).to_string())
    print("heads:", comparison.meta["heads"])

    fig_dir = Path(args.figures)
    save_figure(method_comparison(comparison), fig_dir / "nasa_methods", include_plotlyjs="directory")
    if "nasa" in comparison.train_results:
        res = comparison.train_results["nasa"]
        save_figure(training_curves(res), fig_dir / "nasa_training_curve", include_plotlyjs="directory")
        held_out = eval_sets[next(iter(eval_sets))][:64]
        before = scan_nas(model, held_out, progress=False)
        with res.adapter.applied(model):
            after = scan_nas(model, held_out, progress=False)
        save_figure(nas_change_heatmap(before, after, res.heads), fig_dir / "nasa_nas_change", include_plotlyjs="directory")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
