"""Deprecated: the old import path of :mod:`nasa_lens.finetune` (NASA, the head-restricted fine-tune) and
:mod:`nasa_lens.adapters`. Importing it warns; import ``nasa_lens.finetune`` (or ``nasa_lens.adapters``)."""
import warnings

warnings.warn("nasa_lens.nasa is deprecated; import nasa_lens.finetune (adapters: nasa_lens.adapters) instead",
              DeprecationWarning, stacklevel=2)

from nasa_lens.finetune import *  # noqa: E402,F401,F403
from nasa_lens.finetune import __all__  # noqa: E402,F401
