"""Deprecated: the old import path of :mod:`nasa_lens.plots.study`. Importing it warns; import ``nasa_lens.plots.study``."""
import warnings

warnings.warn("nasa_lens.plots_study is deprecated; import nasa_lens.plots.study instead", DeprecationWarning, stacklevel=2)

from nasa_lens.plots.study import *  # noqa: E402,F401,F403
from nasa_lens.plots.study import __all__  # noqa: E402,F401
