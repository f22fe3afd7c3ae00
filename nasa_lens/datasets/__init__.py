"""Labelled yes/no datasets: built-in reasoning generators, real datasets shipped in the package (fetched
from their registry packages only on request), and JSONL files. Model-agnostic: nothing here imports torch or transformers.

>>> from nasa_lens.datasets import load_dataset
>>> ds = load_dataset("arithmetic", limit=10, difficulty=3)   # doctest: +SKIP
>>> ds.n_yes, ds.n_no                                          # doctest: +SKIP
(5, 5)
"""
from __future__ import annotations

from nasa_lens.datasets.core import DatasetError, Example, YesNoDataset, read_jsonl, write_jsonl
from nasa_lens.datasets.generators import GENERATORS
from nasa_lens.datasets.loader import list_datasets, load_dataset, load_datasets
from nasa_lens.datasets.sources import REGISTRY, fetch_dataset, pull_dataset

__all__ = [
    "Example",
    "YesNoDataset",
    "DatasetError",
    "load_dataset",
    "load_datasets",
    "list_datasets",
    "fetch_dataset",
    "pull_dataset",
    "read_jsonl",
    "write_jsonl",
    "GENERATORS",
    "REGISTRY",
]
