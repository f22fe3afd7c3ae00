"""De-biasing fixes behind one interface: fit on a training split, apply as a context manager, save/load.

``make_method(name, **options)`` builds a fix from the registry (:data:`METHODS`: ``base``, ``threshold``,
``knockout``, ``mask``, ``steer``, ``nasa``, ``random`` and ``random-knockout|mask|steer``);
``fix.fit(model, train)``; ``with fix.apply(model): ...``; ``fix.save(dir)`` / ``load_method(dir, model)``;
:func:`compare_fixes` puts them side by side (:class:`ComparisonResult`, ``comparison.csv``), and
:func:`compare_methods` is its NASA-vs-baselines preset (``nasa``, ``random``, ``all`` with one training config).
How each fix picks its heads: :mod:`nasa_lens.debias.methods`.
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
from nasa_lens.debias.compare import (
    BASELINE_METHODS,
    COMPARE_METRICS,
    DEFAULT_METHODS,
    PREDICTION_COLUMNS,
    ComparisonResult,
    build_fixes,
    compare_fixes,
    compare_methods,
    comparison_columns,
    paired_frames,
    paired_from_predictions,
)
from nasa_lens.debias.threshold import fit_threshold

__all__ = [
    "METHODS",
    "BASELINE_METHODS",
    "COMPARE_METRICS",
    "DEFAULT_METHODS",
    "PREDICTION_COLUMNS",
    "ComparisonResult",
    "DebiasError",
    "DebiasMethod",
    "build_fixes",
    "compare_fixes",
    "compare_methods",
    "comparison_columns",
    "fit_threshold",
    "load_method",
    "make_method",
    "method_names",
    "paired_frames",
    "paired_from_predictions",
    "read_method_meta",
]


def __getattr__(name: str):
    if name == "FixComparison":  # its name before the two comparisons became one
        import warnings

        warnings.warn("nasa_lens.debias.FixComparison is deprecated; use nasa_lens.debias.ComparisonResult",
                      DeprecationWarning, stacklevel=2)
        return ComparisonResult
    raise AttributeError(f"module 'nasa_lens.debias' has no attribute {name!r}")
