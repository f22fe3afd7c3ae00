"""``nasa-lens compare``: de-biasing fixes side by side (threshold, knockout, mask, steer, NASA, random heads).

Every fix is fitted on the train splits of ``--train`` (heads and settings chosen there only), applied, and
evaluated on every ``--test`` set (a training dataset's test split; any other dataset whole). Writes
``OUT/comparison.csv`` (one row per method and test set, metrics with ``_lo``/``_hi`` 95% bootstrap
intervals, params, fit seconds, LM loss on neutral text), ``OUT/methods/NAME`` (each fitted fix; apply one
with ``nasa-lens eval --method OUT/methods/NAME``), ``OUT/comparison.html``/``.png`` and ``OUT/report.md``.
"""
from __future__ import annotations

import argparse
import shlex
import sys

# CompareConfig's defaults (nasa_lens.jobs_debias is not imported while the parser is built; a test checks them)
DEFAULTS = {"methods": "base,threshold,knockout,mask,steer,nasa,random", "steps": 60, "limit": 200, "train_limit": 200,
            "k": 8, "fit_limit": 64, "n_boot": 1000}


def register(sub: argparse._SubParsersAction) -> None:
    d = DEFAULTS
    p = sub.add_parser("compare", help="de-biasing fixes side by side: fit on training splits, evaluate on test sets",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("--model", default="smollm2-135m-instruct", help="built-in name, local folder, .gguf file or hub id")
    p.add_argument("--train", required=True, help="training dataset(s), comma-separated (their train splits)")
    p.add_argument("--test", required=True, help="test dataset(s), comma-separated")
    p.add_argument("--methods", default=d["methods"], help="comma-separated (default %(default)s); also random-knockout, random-mask, random-steer")
    p.add_argument("--steps", type=int, default=d["steps"], help="optimizer steps of nasa/random (default %(default)s)")
    p.add_argument("--limit", type=int, default=d["limit"], help="label-balanced examples per test set (default %(default)s)")
    p.add_argument("--train-limit", type=int, default=d["train_limit"], help="label-balanced examples per training dataset (default %(default)s)")
    p.add_argument("--k", type=int, default=d["k"], help="heads of nasa/steer (default %(default)s)")
    p.add_argument("--fit-limit", type=int, default=d["fit_limit"], help="training examples each fix's setting is chosen on (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", default="yes-no", help="prompt format: yes-no, no-yes, true-false, false-true")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--n-boot", type=int, default=d["n_boot"], help="bootstrap resamples (default %(default)s)")
    p.add_argument("--no-lm-loss", action="store_true", help="skip the LM loss on neutral text")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=_compare)


def _compare(args: argparse.Namespace) -> int:
    from nasa_lens.jobs_debias import CompareConfig, run_compare

    cfg = CompareConfig(train=args.train, test=args.test, methods=args.methods, model=args.model, steps=args.steps,
                        limit=args.limit, train_limit=args.train_limit, k=args.k, fit_limit=args.fit_limit, seed=args.seed,
                        format=args.format, batch_size=args.batch_size, n_boot=args.n_boot, lm_loss=not args.no_lm_loss)
    command = "nasa-lens " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv and "compare" in sys.argv else ""
    result = run_compare(cfg, args.out, command=command)
    cols = ["method", "dataset", "n", "accuracy", "pr_gap", "yes_rate", "auroc", "params", "fit_seconds"]
    print(result.frame[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(f"wrote {args.out}/comparison.csv, report.md, comparison.html and methods/")
    return 0
