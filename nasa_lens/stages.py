"""Deprecated: the old import path of :mod:`nasa_lens.study.stages`. Importing it warns; import ``nasa_lens.study.stages``."""
import warnings

warnings.warn("nasa_lens.stages is deprecated; import nasa_lens.study.stages instead", DeprecationWarning, stacklevel=2)

from nasa_lens.study.stages import *  # noqa: E402,F401,F403
from nasa_lens.study.stages import __all__  # noqa: E402,F401
