"""The real datasets that ship inside the package, and the manifest that describes them.

``nasa_lens/datasets/data/`` holds one gzip-compressed JSONL file per dataset and ``manifest.json``: for
each dataset its file, source (package and version, or repository and commit), licence and attribution,
count, label counts and the sha256 of its normalised JSONL (:func:`~nasa_lens.datasets.core.jsonl_sha256`).
:func:`load_shipped` reads a shipped file and checks it against its record, so a damaged installation is an
error that names the file, never another sample. Nothing here touches the network; fetching from a registry
(:mod:`nasa_lens.datasets.sources`) checks its result against the same records.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasa_lens.datasets.core import DatasetError, Example, jsonl_sha256, read_jsonl
from nasa_lens.vocab import MANIFEST_FILE

__all__ = ["DATA_DIR", "MANIFEST_FILE", "ManifestRecord", "manifest", "load_shipped", "check_examples"]

DATA_DIR = Path(__file__).with_name("data")
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class ManifestRecord:
    """What a real dataset is: where it came from, its licence, and the facts any copy of it must match."""

    name: str
    count: int
    n_yes: int
    n_no: int
    sha256: str  # of the normalised JSONL (jsonl_sha256 of its examples)
    licence: str
    attribution: str
    description: str
    source: Mapping[str, str] = field(default_factory=dict)  # kind + package/version or repository/commit/path
    file: str | None = None  # the shipped file in DATA_DIR; None: not shipped (fetch it)

    @property
    def shipped_path(self) -> Path | None:
        return DATA_DIR / self.file if self.file else None

    @property
    def source_text(self) -> str:
        s = self.source
        if s.get("kind") == "pypi":
            return f"PyPI {s['package']}=={s['version']}: {s['member']}"
        if s.get("kind") == "github":
            return f"GitHub {s['repository']}@{s['commit'][:12]}: {s['path']}"
        return ", ".join(f"{k}={v}" for k, v in s.items())

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "count": self.count, "n_yes": self.n_yes, "n_no": self.n_no,
                "sha256": self.sha256, "licence": self.licence, "attribution": self.attribution,
                "description": self.description, "source": dict(self.source)}


@functools.cache
def manifest() -> dict[str, ManifestRecord]:
    """The manifest of the shipped datasets, name -> record (read once)."""
    path = DATA_DIR / MANIFEST_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"format {raw.get('format')!r}, expected {MANIFEST_FORMAT}")
        return {name: ManifestRecord(name=name, **rec) for name, rec in raw["datasets"].items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise DatasetError(f"the dataset manifest {path} is missing or damaged ({e}); reinstall nasa-lens") from None


def check_examples(record: ManifestRecord, examples: Sequence[Example], where: str) -> None:
    """Raise :class:`DatasetError` unless ``examples`` (read from ``where``) are exactly the dataset of
    ``record``: same count, label counts and checksum."""
    n_yes = sum(ex.label == "yes" for ex in examples)
    got = (len(examples), n_yes, len(examples) - n_yes)
    want = (record.count, record.n_yes, record.n_no)
    if got != want:
        raise DatasetError(
            f"{where}: {got[0]} examples ({got[1]} yes, {got[2]} no), but dataset {record.name!r} has "
            f"{want[0]} ({want[1]} yes, {want[2]} no) according to its manifest"
        )
    digest = jsonl_sha256(examples)
    if digest != record.sha256:
        raise DatasetError(
            f"{where}: checksum {digest[:16]}... differs from the manifest's {record.sha256[:16]}... for dataset "
            f"{record.name!r} (same count, different content)"
        )


def load_shipped(name: str) -> list[Example]:
    """The examples of shipped dataset ``name``, checked against its manifest record."""
    record = manifest().get(name)
    if record is None or record.shipped_path is None:
        raise DatasetError(f"dataset {name!r} is not shipped with nasa-lens")
    path = record.shipped_path
    if not path.is_file():
        raise DatasetError(f"the shipped file of dataset {name!r} is missing: {path}; reinstall nasa-lens")
    examples = read_jsonl(path)
    check_examples(record, examples, f"shipped dataset file {path}")
    return examples
