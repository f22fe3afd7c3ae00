"""The ``nasa-lens`` command line: a thin layer. Each command lives in ``nasa_lens/commands/<module>.py``,
whose ``register(subparsers)`` adds its parser; the handler builds a config and calls one library function."""
from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import os
import sys
import traceback
import warnings
from collections.abc import Iterator, Sequence

from nasa_lens import __version__
from nasa_lens.commands.helptext import CommandParser, add_examples
from nasa_lens.commands.logs import add_logging_args, cli_logging, file_log
from nasa_lens.vocab import NasaLensError

COMMAND_MODULES = (
    "nasa_lens.commands.basic",  # models, data, eval
    "nasa_lens.commands.scan",  # scan
    "nasa_lens.commands.causal",  # ablate, patch, sweep
    "nasa_lens.commands.dla",  # dla
    "nasa_lens.commands.path_patching",  # paths
    "nasa_lens.commands.finetune",  # finetune
    "nasa_lens.commands.study",  # study
    "nasa_lens.commands.report",  # report (report.html of a finished study)
    "nasa_lens.commands.compare",  # compare (de-biasing fixes)
)


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="nasa-lens",
        description="Negative-bias interpretability: NAS head scans, causal tests and NASA fine-tuning. "
        "`nasa-lens COMMAND --help` describes each command.",
    )
    parser.add_argument("--version", action="version", version=f"nasa-lens {__version__}")
    add_logging_args(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    add_examples(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code.

    Errors by kind: bad input (a :class:`~nasa_lens.vocab.NasaLensError`) is one line
    ``nasa-lens CMD: error: ...`` and exit code 2; any other exception is a bug or an environment failure
    (a torch error, out of memory): one line ``nasa-lens CMD: internal error (TypeName): ...`` and exit code 1.
    ``-v`` adds the traceback to stderr (the exit code stays the same). Ctrl-C exits with 130. ``-q`` turns the
    progress bars off; ``--log-file FILE`` appends the command line, the run's INFO messages, any error with its
    traceback and the exit code to FILE (:mod:`nasa_lens.commands.logs`).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with cli_logging(args, sys.argv[1:] if argv is None else argv):
            code = _run(args)
            file_log().info("exit code %d", code)
            return code
    except NasaLensError as exc:  # the log file itself could not be opened
        return _report(args, f"error: {exc}", 2)


def _run(args: argparse.Namespace) -> int:
    try:
        with _sigterm_as_interrupt(), _distributed(args), warnings.catch_warnings():
            warnings.showwarning = functools.partial(_show_warning, args)  # a warning is one line, no source line
            return int(args.func(args) or 0)
    except Terminated:
        if _rank() == 0:
            print(f"nasa-lens {args.command}: terminated (SIGTERM); finished outputs are intact", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        if _rank() == 0:
            print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`nasa-lens models | head`): stop quietly, as SIGPIPE would
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except NasaLensError as exc:
        return _report(args, f"error: {exc}", 2)
    except Exception as exc:  # noqa: BLE001 - every other failure is reported as internal, never swallowed silently
        return _report(args, f"internal error ({type(exc).__name__}): {exc}", 1)


def _show_warning(args: argparse.Namespace, message, category, filename, lineno, file=None, line=None) -> None:
    print(f"nasa-lens {args.command}: warning: {message}", file=sys.stderr)


def _report(args: argparse.Namespace, message: str, code: int) -> int:
    """Print the one error line. Under torchrun every rank meets the same input error: only rank 0 prints it; an
    internal error (which may be one rank's own) is printed by every rank, the others naming theirs."""
    rank = _rank()
    if code == 2 and rank != 0:
        return code
    if args.verbose:
        traceback.print_exc(file=sys.stderr)
    file_log().error("%s", message, exc_info=True)
    where = f" (rank {rank})" if rank != 0 else ""
    print(f"nasa-lens {args.command}{where}: {message}", file=sys.stderr)
    return code


EXIT_TERMINATED = 143
"""Exit code after SIGTERM (128 + 15, the shell's convention), with one line on stderr."""

EXIT_BROKEN_PIPE = 141
"""Exit code when standard output is closed by its reader (128 + SIGPIPE), with no message."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C: every ``finally`` and atomic write unwinds as for Ctrl-C."""


def _rank() -> int:
    """This process's rank under torchrun (``RANK``), else 0."""
    try:
        return int(os.environ.get("RANK", "0")) if "WORLD_SIZE" in os.environ else 0
    except ValueError:
        return 0


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """For the command's duration, SIGTERM raises :class:`Terminated` in the main thread (outside the main
    thread, or where signals cannot be set, nothing changes); the previous handler is restored after."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):  # noqa: ARG001
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):  # an embedding that does not let Python handle signals
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _distributed(args: argparse.Namespace) -> Iterator[None]:
    """Under ``torchrun`` (``RANK`` / ``WORLD_SIZE`` set): initialise the process group (gloo on CPU, NCCL
    for CUDA tensors), give each rank its own GPU for a bare ``--device cuda``, keep the other ranks' stdout
    quiet (rank 0 prints and writes), and tear the group down at the end. Otherwise: nothing."""
    from nasa_lens import parallel

    if not parallel.launched_by_torchrun() or parallel.world().initialised:
        yield  # one process, or a caller that set up (and will tear down) the process group itself
        return
    if getattr(args, "device", None) is not None:
        from nasa_lens.models import check_device

        check_device(args.device)  # before any process group: --device cuda without CUDA is a clear error
        args.device = parallel.rank_device(args.device)
    w = parallel.init_from_env(getattr(args, "device", None), getattr(args, "device_map", None))
    try:
        if w.rank == 0:
            yield
        else:
            with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
                yield
    finally:
        parallel.destroy()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
