"""Where a command's messages go: the console (warnings; ``-v``: INFO), a log file (``--log-file``), and
whether tqdm bars are drawn (``-q`` turns them off).

:func:`cli_logging` wraps one command: it sets up the console handler, adds the log file's handler (INFO
and above, with time stamps: the command line, every library message, the exit status and, on failure,
the traceback), routes console logging through tqdm while bars are drawn (a message never breaks a bar),
and removes all of it afterwards (``main`` runs in-process in the tests).

Torch-free (standard library and tqdm only).
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import shlex
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from nasa_lens.vocab import InputError

__all__ = ["add_logging_args", "cli_logging", "file_log", "progress_on"]

FILE_LOGGER = "nasa_lens.cli.logfile"
"""Records only the log file sees (the command line, the exit status, tracebacks): not propagated."""

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def add_logging_args(parser: argparse.ArgumentParser) -> None:
    """``-v``, ``-q`` and ``--log-file``, given before the command: ``nasa-lens -q --log-file run.log eval ...``."""
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level, with tracebacks on errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars (results and errors still print)")
    parser.add_argument("--log-file", default=None, metavar="FILE",
                        help="append a log to FILE: the command line, every INFO message with its time, the exit status")


def progress_on(args: argparse.Namespace) -> bool:
    """Whether the command draws tqdm bars: not with ``-q`` (nor with a command's own ``--no-progress``)."""
    return not (getattr(args, "quiet", False) or getattr(args, "no_progress", False))


def file_log() -> logging.Logger:
    """The logger whose records go to the log file only (nowhere without ``--log-file``)."""
    logger = logging.getLogger(FILE_LOGGER)
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())  # else logging's last resort would print its records to stderr
    return logger


@contextlib.contextmanager
def cli_logging(args: argparse.Namespace, argv: Sequence[str] | None) -> Iterator[None]:
    """Logging for one command (see the module docstring).

    Raises:
        InputError: ``--log-file`` cannot be opened for appending.
    """
    root = logging.getLogger()
    verbose = getattr(args, "verbose", False)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    handler = None
    old_level = root.level
    consoles: list[tuple[logging.Handler, int]] = []
    quiet_file = file_log()
    if getattr(args, "log_file", None):
        path = Path(args.log_file)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(path, mode="a", encoding="utf-8")
        except OSError as exc:
            raise InputError(f"--log-file {path}: cannot write it ({exc.strerror or exc})") from exc
        handler.setLevel(logging.INFO)
        handler.setFormatter(logging.Formatter(_FORMAT))
        if root.level > logging.INFO or root.level == logging.NOTSET:
            for h in root.handlers:  # the console keeps its level: the file gets INFO without the console showing it
                if getattr(h, "stream", None) in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__) and h.level == logging.NOTSET:
                    consoles.append((h, h.level))
                    h.setLevel(old_level or logging.WARNING)
            root.setLevel(logging.INFO)
        root.addHandler(handler)
        quiet_file.addHandler(handler)
        quiet_file.setLevel(logging.INFO)
        command = "nasa-lens " + " ".join(shlex.quote(a) for a in argv) if argv is not None else "nasa-lens"
        quiet_file.info("command: %s", command)
    try:
        if progress_on(args):
            from tqdm.contrib.logging import logging_redirect_tqdm

            with logging_redirect_tqdm():
                yield
        else:
            yield
    finally:
        if handler is not None:
            root.removeHandler(handler)
            quiet_file.removeHandler(handler)
            root.setLevel(old_level)
            for h, level in consoles:
                h.setLevel(level)
            handler.close()
