"""De-biasing fixes behind one interface: fit on a training split, apply as a context manager, save/load.

``make_method(name, **options)`` builds a fix from the registry (:data:`METHODS`: ``base``, ``threshold``,
``knockout``, ``mask``, ``steer``, ``nasa``, ``random`` and ``random-knockout|mask|steer``);
``fix.fit(model, train)``; ``with fix.apply(model): ...``; ``fix.save(dir)`` / ``load_method(dir, model)``;
:func:`compare_fixes` puts them side by side. How each fix picks its heads: :mod:`nasa_lens.debias.methods`.
"""
from nasa_lens.debias.base import (
    METHODS,
    DebiasError,
    DebiasMethod,
    load_method,
    make_method,
    method_names,
    read_method_meta,
)
from nasa_lens.debias import methods as _methods  # noqa: F401  (registers the fixes)
from nasa_lens.debias.compare import COMPARE_METRICS, DEFAULT_METHODS, FixComparison, build_fixes, compare_fixes, comparison_columns

__all__ = [
    "METHODS",
    "COMPARE_METRICS",
    "DEFAULT_METHODS",
    "DebiasError",
    "DebiasMethod",
    "FixComparison",
    "build_fixes",
    "compare_fixes",
    "comparison_columns",
    "load_method",
    "make_method",
    "method_names",
    "read_method_meta",
]
