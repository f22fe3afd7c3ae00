"""Kept for old imports: the figures moved to :mod:`nasa_lens.plots.finetune`."""
from nasa_lens.plots.finetune import *  # noqa: F401,F403
from nasa_lens.plots.finetune import __all__  # noqa: F401
