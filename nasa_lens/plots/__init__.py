"""Figures, one module per area. Every function returns a plotly ``Figure`` (never shows it) and does no
computation beyond reshaping what a result object already holds; :func:`save_figure` writes one to disk.

* :mod:`nasa_lens.plots.nas`: NAS heatmaps, top heads, distributions (re-exported here, the old
  ``nasa_lens.plots`` names);
* :mod:`nasa_lens.plots.causal`: ablation curves, effect sweeps, patching;
* :mod:`nasa_lens.plots.finetune`: NASA training curves, method comparison, NAS change;
* :mod:`nasa_lens.plots.study`: the study's side-by-side figures;
* :mod:`nasa_lens.plots.save`: :func:`save_figure` (HTML, byte-stable; PNG when a Chromium is found).

Colour convention for NAS: one diverging scale centred at 0 (:data:`nasa_lens.vocab.NAS_COLORSCALE`), red =
positive = attends to "No" more than to "Yes" (negative-biased), blue = "Yes"-leaning.
"""
from __future__ import annotations

from nasa_lens.plots.nas import NAS_COLORSCALE, head_distributions, heatmap_grid, nas_heatmap, top_heads_bar
from nasa_lens.plots.save import find_browser, save_figure

__all__ = [
    "NAS_COLORSCALE",
    "nas_heatmap",
    "top_heads_bar",
    "head_distributions",
    "heatmap_grid",
    "find_browser",
    "save_figure",
]
