"""Names only: the vocabulary every other module of nasa-lens shares.

Torch-free and import-free (standard library only), so the CLI can build its parsers and the configs can
validate values without loading torch. Every name, preset, mode, hook name, file name and colour scale that
more than one module needs is defined here once.
"""
from __future__ import annotations


class NasaLensError(Exception):
    """Base class of every error caused by the user's input (a bad argument, file, dataset, model name,
    adapter...). The CLI prints such an error as one line and exits with code 2; any other exception is an
    internal error (exit code 1)."""
