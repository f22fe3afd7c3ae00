"""Kept for old imports: the figures moved to :mod:`nasa_lens.plots.study`."""
from nasa_lens.plots.study import *  # noqa: F401,F403
from nasa_lens.plots.study import __all__  # noqa: F401
