"""The ``nasa-lens`` command line: a thin layer. Each command lives in ``nasa_lens/commands/<module>.py``,
whose ``register(subparsers)`` adds its parser; the handler builds a config and calls one library function."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Sequence

from nasa_lens.vocab import NasaLensError

COMMAND_MODULES = (
    "nasa_lens.commands.basic",  # models, data, eval
    "nasa_lens.commands.scan",  # scan
    "nasa_lens.commands.causal",  # ablate, patch
    "nasa_lens.commands.dla",  # dla, paths
    "nasa_lens.commands.finetune",  # finetune
    "nasa_lens.commands.study",  # study
    "nasa_lens.commands.report",  # report (report.html of a finished study)
    "nasa_lens.commands.compare",  # compare (de-biasing fixes)
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
    """Run one command; returns the exit code.

    Errors by kind: bad input (a :class:`~nasa_lens.vocab.NasaLensError`) is one line
    ``nasa-lens CMD: error: ...`` and exit code 2; any other exception is a bug or an environment failure
    (a torch error, out of memory): one line ``nasa-lens CMD: internal error (TypeName): ...`` and exit code 1.
    ``-v`` adds the traceback to stderr (the exit code stays the same). Ctrl-C exits with 130.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except NasaLensError as exc:
        return _report(args, f"error: {exc}", 2)
    except Exception as exc:  # noqa: BLE001 - every other failure is reported as internal, never swallowed silently
        return _report(args, f"internal error ({type(exc).__name__}): {exc}", 1)


def _report(args: argparse.Namespace, message: str, code: int) -> int:
    if args.verbose:
        traceback.print_exc(file=sys.stderr)
    print(f"nasa-lens {args.command}: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
