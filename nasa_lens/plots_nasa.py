"""Deprecated: the old import path of :mod:`nasa_lens.plots.finetune`. Importing it warns; import ``nasa_lens.plots.finetune``."""
import warnings

warnings.warn("nasa_lens.plots_nasa is deprecated; import nasa_lens.plots.finetune instead", DeprecationWarning, stacklevel=2)

from nasa_lens.plots.finetune import *  # noqa: E402,F401,F403
from nasa_lens.plots.finetune import __all__  # noqa: E402,F401
