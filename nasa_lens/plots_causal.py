"""Kept for old imports: the figures moved to :mod:`nasa_lens.plots.causal`."""
from nasa_lens.plots.causal import *  # noqa: F401,F403
from nasa_lens.plots.causal import __all__  # noqa: F401
