"""``nasa-lens finetune``: train a NASA adapter (head-restricted fine-tune) and write it with its metrics.

A thin layer over :class:`nasa_lens.nasa.NASAConfig` and :func:`nasa_lens.nasa.train_nasa`: the training
split of every ``--train`` dataset (label-balanced ``--limit`` each), ``--val-fraction`` of it held out for
validation (early stopping and ``metrics.json``), the test splits left untouched for ``nasa-lens eval
--adapter``. Writes ``OUT/adapter.safetensors``, ``OUT/adapter.json``, ``OUT/metrics.json``
(``{"before": {...}, "after": {...}}`` on the validation split), ``OUT/history.csv`` and
``OUT/checkpoints/checkpoint.pt`` (``--resume`` continues from it).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from nasa_lens.commands.common import add_model_args, load_model_from_args

# The NASAConfig defaults the flags show (importing nasa_lens.nasa here would load torch when the parser is
# built; tests/test_nasa.py checks that these equal the dataclass defaults).
DEFAULTS = {"heads": "top:8", "steps": 150, "lr": 2e-3, "batch_size": 8, "lambda_nas": 0.0, "eval_every": 25}


def register(sub: argparse._SubParsersAction) -> None:
    d = DEFAULTS
    p = sub.add_parser(
        "finetune",
        help="NASA: fine-tune only the negative-attention heads' query (and key) rows; writes an adapter",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    add_model_args(p)
    p.add_argument("--train", required=True, help="dataset name(s) or .jsonl path(s), comma-separated; their train splits are used")
    p.add_argument("--limit", type=int, default=None, help="label-balanced sample of at most N training examples per dataset")
    p.add_argument("--seed", type=int, default=0, help="data sampling, validation hold-out, batch order and init")
    p.add_argument("--format", default="yes-no", help="prompt format: yes-no, no-yes, true-false, false-true")
    p.add_argument("--heads", default=d["heads"], help="top:K, bottom:K, random:K[:SEED], all, incremental, or L.H,L.H (default %(default)s)")
    p.add_argument("--steps", type=int, default=d["steps"], help="optimizer steps (per round with incremental; default %(default)s)")
    p.add_argument("--batch-size", type=int, default=d["batch_size"], help="label-balanced examples per step (default %(default)s)")
    p.add_argument("--lr", type=float, default=d["lr"], help="AdamW learning rate (default %(default)s)")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--rank", type=int, default=None, help="low-rank deltas A@B of this rank (default: full rows)")
    p.add_argument("--train-k", action="store_true", help="also train key rows of fully selected KV groups")
    p.add_argument("--key-rule", choices=["complete", "any"], default="complete", help="GQA rule for --train-k (default %(default)s)")
    p.add_argument("--lambda-nas", type=float, default=d["lambda_nas"], help="weight of the NAS-alignment term (default %(default)s)")
    p.add_argument("--nas-target", choices=["neutral", "label"], default="neutral")
    p.add_argument("--nas-target-scale", type=float, default=1.0)
    p.add_argument("--positions", choices=["after", "last"], default="after", help="NAS query positions (ranking and loss)")
    p.add_argument("--scan-limit", type=int, default=64, help="training examples scanned for top:K / incremental")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of the training split held out for validation")
    p.add_argument("--val-limit", type=int, default=None, help="at most N validation examples")
    p.add_argument("--eval-every", type=int, default=d["eval_every"], help="validate every N steps (default %(default)s)")
    p.add_argument("--patience", type=int, default=None, help="early stop after N validations without improvement")
    p.add_argument("--early-stop-on", choices=["val_loss", "abs_pr_gap"], default="val_loss")
    p.add_argument("--checkpoint-every", type=int, default=25, help="write a resumable checkpoint every N steps")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints if present")
    p.add_argument("--eval-batch-size", type=int, default=16)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=_finetune)


def _load_training_examples(args: argparse.Namespace) -> list:
    from nasa_lens.datasets import load_datasets

    names = list(dict.fromkeys(n.strip() for n in args.train.split(",") if n.strip()))
    if not names:
        raise ValueError("--train names no dataset")
    return load_datasets(names, limit=args.limit, seed=args.seed, split="train")


def _finetune(args: argparse.Namespace) -> int:
    from nasa_lens.nasa import NASAConfig, holdout_split, train_nasa

    cfg = NASAConfig(
        heads=args.heads,
        rank=args.rank,
        train_k=args.train_k,
        key_rule=args.key_rule,
        lr=args.lr,
        weight_decay=args.weight_decay,
        steps=args.steps,
        batch_size=args.batch_size,
        lambda_nas=args.lambda_nas,
        nas_target=args.nas_target,
        nas_target_scale=args.nas_target_scale,
        nas_positions=args.positions,
        eval_every=args.eval_every,
        patience=args.patience,
        early_stop_on=args.early_stop_on,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        scan_limit=args.scan_limit,
        format=args.format,
        eval_batch_size=args.eval_batch_size,
        progress=not args.no_progress,
    )
    if args.val_limit is not None and args.val_limit < 1:
        raise ValueError(f"--val-limit must be >= 1, got {args.val_limit}")
    examples = _load_training_examples(args)
    train, val = holdout_split(examples, args.val_fraction, seed=args.seed)
    if args.val_limit is not None:
        val = val[: args.val_limit]
    model = load_model_from_args(args)
    out = Path(args.out)
    result = train_nasa(model, train, val, cfg, checkpoint_dir=out / "checkpoints", resume=args.resume)
    result.save(out, model)
    print(result.summary())
    if result.before is not None and result.after is not None:
        for key in ("accuracy", "precision", "recall", "pr_gap", "yes_rate", "auroc"):
            print(f"  {key:10s} {result.before.metrics[key]:.3f} -> {result.after.metrics[key]:.3f}")
    print(f"wrote {out / 'adapter.safetensors'}, adapter.json, metrics.json and history.csv in {out}")
    return 0
