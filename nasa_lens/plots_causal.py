"""Deprecated: the old import path of :mod:`nasa_lens.plots.causal`. Importing it warns; import ``nasa_lens.plots.causal``."""
import warnings

warnings.warn("nasa_lens.plots_causal is deprecated; import nasa_lens.plots.causal instead", DeprecationWarning, stacklevel=2)

from nasa_lens.plots.causal import *  # noqa: E402,F401,F403
from nasa_lens.plots.causal import __all__  # noqa: E402,F401
