"""The ``nasa-lens`` command line: a thin layer. Each command lives in ``nasa_lens/commands/<module>.py``,
whose ``register(subparsers)`` adds its parser; the handler builds a config and calls one library function."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

COMMAND_MODULES = (
    "nasa_lens.commands.basic",  # models, data, eval
    "nasa_lens.commands.scan",  # scan
    "nasa_lens.commands.causal",  # ablate, patch
    "nasa_lens.commands.finetune",  # finetune
    "nasa_lens.commands.study",  # study
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nasa-lens",
        description="Negative-bias interpretability: NAS head scans, causal tests and NASA fine-tuning.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        # Bad input: one clear line, no traceback (use -v to see it).
        if args.verbose:
            raise
        print(f"nasa-lens {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
