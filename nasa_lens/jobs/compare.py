"""The compare job (``nasa-lens compare``): load the model and data, fit and evaluate every fix, write the
table, the fitted fixes, a figure and a short report."""
from __future__ import annotations

import dataclasses
import logging
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasa_lens.vocab import COMPARISON_FIGURE_FILE, COMPARISON_PARTIAL_FILE, DEFAULT_MODEL, FORMATS, InputError, check_format

__all__ = ["CompareConfig", "CompareConfigError", "load_compare_data", "run_compare"]

logger = logging.getLogger(__name__)

CompareConfigError = InputError  # a compare setting is invalid


def split_names(value: Any) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]`` (stripped, empty and repeated names dropped)."""
    if isinstance(value, str):
        value = value.split(",")
    return list(dict.fromkeys(str(v).strip() for v in value if str(v).strip()))


@dataclass
class CompareConfig:
    """One side-by-side comparison of de-biasing fixes (``nasa-lens compare`` builds it from its flags)."""

    train: str = field(metadata={"help": "training dataset(s), comma-separated; their train splits are used"})
    test: str = field(metadata={"help": "test dataset(s), comma-separated: a training dataset's test split, any other dataset "
                                        "whole; GENERATOR:dN picks a generator's difficulty level"})
    methods: str = field(default="base,threshold,knockout,mask,steer,nasa,random",
                         metadata={"help": "fixes to compare, comma-separated (also random-knockout, random-mask, random-steer)"})
    model: str = field(default=DEFAULT_MODEL, metadata={"help": "built-in name, local folder, .gguf file or hub id"})
    steps: int = field(default=60, metadata={"help": "optimizer steps of the trained fixes (nasa, random)"})
    limit: int | None = field(default=200, metadata={"help": "label-balanced test examples per test set (None: all)"})
    train_limit: int | None = field(default=200, metadata={"help": "label-balanced training examples per training dataset"})
    k: int = field(default=8, metadata={"help": "heads of nasa/steer (knockout/mask choose 2-16 on the training split)"})
    fit_limit: int = field(default=64, metadata={"help": "training examples used to choose each fix's setting"})
    seed: int = field(default=0, metadata={"help": "data sampling, bootstrap and fixes' seeds"})
    format: str = field(default="yes-no", metadata={"help": "prompt format", "choices": FORMATS})
    batch_size: int = field(default=16, metadata={"help": "evaluation batch size"})
    n_boot: int = field(default=1000, metadata={"help": "bootstrap resamples for the intervals"})
    lm_loss: bool = field(default=True, metadata={"help": "measure the LM loss on neutral text with each fix applied"})

    def __post_init__(self) -> None:
        from nasa_lens.debias import METHODS

        self.train, self.test, self.methods = (",".join(split_names(v)) for v in (self.train, self.test, self.methods))
        if not self.train:
            raise CompareConfigError("--train names no dataset")
        if not self.test:
            raise CompareConfigError("--test names no dataset")
        if not self.methods:
            raise CompareConfigError("--methods names no method")
        bad = [m for m in self.method_list if m not in METHODS]
        if bad:
            raise CompareConfigError(f"unknown method(s) {', '.join(map(repr, bad))}; known: {', '.join(METHODS)}")
        for name in ("steps", "k", "fit_limit", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise CompareConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {v!r}")
        for name in ("limit", "train_limit"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 2):
                raise CompareConfigError(f"--{name.replace('_', '-')} must be an integer >= 2 (both labels), got {v!r}")
        if self.n_boot < 0:
            raise CompareConfigError(f"--n-boot must be >= 0, got {self.n_boot}")
        check_format(self.format, CompareConfigError)

    @property
    def train_list(self) -> list[str]:
        return split_names(self.train)

    @property
    def test_list(self) -> list[str]:
        return split_names(self.test)

    @property
    def method_list(self) -> list[str]:
        return split_names(self.methods)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def method_options(self) -> dict[str, dict[str, Any]]:
        """Per-method constructor options derived from this config (:func:`nasa_lens.debias.compare.method_options`)."""
        from nasa_lens.debias.compare import method_options

        return method_options(k=self.k, fit_limit=self.fit_limit, steps=self.steps, seed=self.seed, format=self.format,
                              batch_size=self.batch_size)

def _generator_level(name: str) -> tuple[str, dict[str, int]]:
    """``"lookup:d1"`` -> ``("lookup", {"difficulty": 1})`` for a built-in generator; anything else unchanged."""
    import re

    from nasa_lens.datasets.generators import GENERATORS

    m = re.fullmatch(r"(.+):d(\d)", name)
    if m and m.group(1) in GENERATORS:
        return m.group(1), {"difficulty": int(m.group(2))}
    return name, {}


def _data_key(name: str) -> tuple[Any, ...]:
    """What a dataset name or path refers to, whatever its spelling: ``("generator", NAME, difficulty)`` for a
    built-in generator (``arithmetic`` = ``arithmetic:d2``, the default level), ``("file", real path)`` for a
    file (relative, absolute, through a symlink), ``("name", NAME)`` for anything else (a registry name)."""
    import os

    from nasa_lens.datasets.generators import DEFAULT_DIFFICULTY, GENERATORS

    base, options = _generator_level(name)
    if base in GENERATORS:
        return ("generator", base, options.get("difficulty", DEFAULT_DIFFICULTY))
    path = os.path.expanduser(name)
    if os.path.exists(path):
        return ("file", os.path.realpath(path))
    return ("name", name)


def load_compare_data(cfg: CompareConfig) -> tuple[list[Any], dict[str, Any], list[str]]:
    """``(training examples, {test name: dataset}, warnings)``.

    Training: the train split of every ``--train`` dataset (``train_limit`` label-balanced each), mixed and
    shuffled by ``seed``. Test: a dataset that is also a training dataset gives its *test* split (held out
    by the stable hash, but the same distribution: a warning says so); any other dataset is loaded whole
    (``GENERATOR:dN`` picks a generator's difficulty level N, named ``GENERATOR-dN`` in the table).
    Both with ``limit`` label-balanced examples and ``seed``, exactly as ``nasa-lens eval --data T [--split
    test] --limit N --seed S`` loads them."""
    from nasa_lens.datasets import load_dataset, load_datasets

    train = load_datasets(cfg.train_list, limit=cfg.train_limit, seed=cfg.seed, split="train")
    random.Random(cfg.seed).shuffle(train)
    tests: dict[str, Any] = {}
    notes: list[str] = []
    train_keys = {_data_key(n) for n in cfg.train_list}
    for name in cfg.test_list:
        split = "test" if _data_key(name) in train_keys else None  # the same data, however it is spelled
        base, options = _generator_level(name)
        ds = load_dataset(base, limit=cfg.limit, seed=cfg.seed, split=split, **options)
        if options:
            ds.name = f"{base}-d{options['difficulty']}"
        if split:
            notes.append(f"test set {name!r} is also a training set: evaluated on its test split (held-out examples of "
                         "the trained distribution, not unseen data)")
        if ds.name in tests:
            raise CompareConfigError(f"two test sets are called {ds.name!r}")
        tests[ds.name] = ds
    for note in notes:  # once each (the CLI prints a warning as one line)
        warnings.warn(note, UserWarning, stacklevel=2)
    return train, tests, notes


def run_compare(cfg: CompareConfig, out: str | Path, *, command: str = "", progress: bool = False) -> Any:
    """Load, fit and evaluate every fix, write ``comparison.csv``, ``comparison.json``, ``methods/NAME``,
    ``comparison.html``/``.png`` and ``report.md`` into ``out``. Returns the :class:`~nasa_lens.debias.ComparisonResult`."""
    import torch

    from nasa_lens.debias import compare_fixes
    from nasa_lens.io import atomic_output, check_out_dir
    from nasa_lens.models import load_model
    from nasa_lens.plots import save_figure
    from nasa_lens.plots.debias import comparison_figure

    out = check_out_dir(out)
    torch.manual_seed(cfg.seed)
    train, tests, notes = load_compare_data(cfg)  # bad data is reported before the model loads
    model = load_model(cfg.model)
    out.mkdir(parents=True, exist_ok=True)
    result = compare_fixes(model, train, tests, cfg.method_list, options=cfg.method_options(), format=cfg.format,
                           batch_size=cfg.batch_size, n_boot=cfg.n_boot, seed=cfg.seed, lm_loss=cfg.lm_loss, progress=progress,
                           partial=out / COMPARISON_PARTIAL_FILE)
    result.meta.update({"config": cfg.to_dict(), "train": cfg.train_list, "warnings": notes, "command": command})
    with atomic_output(out) as tmp:  # the files appear together (the partial CSV of a long run is kept beside them)
        result.save(tmp)
        save_figure(comparison_figure(result.frame, title=f"De-biasing fixes on {model.name}"), tmp / COMPARISON_FIGURE_FILE)
        result.write_report(tmp, command)
    return result
