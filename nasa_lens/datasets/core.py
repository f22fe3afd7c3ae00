"""Core types of the dataset layer: :class:`Example`, :class:`YesNoDataset`, :class:`DatasetError` and the
JSONL exchange format (:func:`read_jsonl`, :func:`write_jsonl`).

Nothing here knows about models: an example is just a question (optionally with a context passage) and
its correct yes/no answer.
"""
from __future__ import annotations

from nasa_lens.vocab import NasaLensError

import gzip
import hashlib
import json
import logging
import os
import random
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from nasa_lens.io import atomic_path

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "Example", "YesNoDataset", "DatasetError", "read_jsonl", "write_jsonl", "jsonl_bytes", "jsonl_sha256",
    "normalise_label", "LABELS",
]

log = logging.getLogger(__name__)

LABELS: tuple[str, str] = ("yes", "no")
SPLITS: tuple[str, str] = ("train", "test")


class DatasetError(NasaLensError, ValueError):
    """Any problem with dataset input: a malformed file or line, an unknown name, a failed download."""


def normalise_label(value: Any) -> str:
    """Return ``"yes"`` or ``"no"`` for a label given as a bool or a yes/no string (any case).

    Raises :class:`DatasetError` (without location; callers add it) for anything else.
    """
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str) and value.strip().lower() in LABELS:
        return value.strip().lower()
    raise DatasetError(f'label must be "yes" or "no", got {json.dumps(value, ensure_ascii=False)}')


def _check_unicode(text: str, what: str) -> None:
    """Refuse text that cannot be written as UTF-8 (a lone surrogate such as JSON ``"\\ud800"``), before it
    reaches a tokenizer that would fail without naming the example."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start : exc.end]
        raise DatasetError(
            f"{what} is not valid Unicode: lone surrogate {bad.encode('unicode_escape').decode()} at character {exc.start}"
        ) from None


@dataclass(frozen=True)
class Example:
    """One labelled yes/no question.

    ``context`` (e.g. a BoolQ passage) goes before the question in prompts. ``group`` ties examples that
    must land in the same train/test split (e.g. the true and false versions of one GSM8K problem); by
    default each example is its own group (its ``id``).
    """

    question: str
    label: str
    id: str
    context: str | None = None
    group: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.question, str) or not self.question.strip():
            raise DatasetError(f"example {self.id!r}: question must be a non-empty string, got {self.question!r}")
        for what in ("id", "question", "context", "group"):
            value = getattr(self, what)
            if isinstance(value, str):
                _check_unicode(value, f"example {self.id!r}: {what}" if what != "id" else "example id")
        object.__setattr__(self, "label", normalise_label(self.label))
        if isinstance(self.id, int) and not isinstance(self.id, bool):
            object.__setattr__(self, "id", str(self.id))
        if not isinstance(self.id, str) or not self.id:
            raise DatasetError(f"example id must be a non-empty string, got {self.id!r}")
        if self.context is not None and not isinstance(self.context, str):
            raise DatasetError(f"example {self.id!r}: context must be a string or None, got {self.context!r}")
        if self.group is not None and not isinstance(self.group, str):
            raise DatasetError(f"example {self.id!r}: group must be a string or None, got {self.group!r}")

    @property
    def split_key(self) -> str:
        """The key hashed by :meth:`YesNoDataset.split`: ``group`` if set, else ``id``."""
        return self.group if self.group is not None else self.id

    def to_dict(self) -> dict[str, Any]:
        """The JSONL record (optional fields only when set)."""
        record: dict[str, Any] = {"id": self.id, "question": self.question}
        if self.context is not None:
            record["context"] = self.context
        record["label"] = self.label
        if self.group is not None:
            record["group"] = self.group
        return record


def is_test(key: str, test_fraction: float) -> bool:
    """Whether the split key ``key`` belongs to the test split (a stable hash, independent of seeds)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_fraction


class YesNoDataset(Sequence[Example]):
    """A named, list-like sequence of :class:`Example` with unique ids.

    Indexing with an int gives an :class:`Example`; with a slice, a new :class:`YesNoDataset`.
    ``info`` carries provenance (source, options, split, ...) and is passed on to derived datasets.
    """

    def __init__(self, name: str, examples: Iterable[Example], info: dict[str, Any] | None = None) -> None:
        self.name = name
        self.examples: list[Example] = list(examples)
        self.info: dict[str, Any] = dict(info or {})
        seen: set[str] = set()
        for ex in self.examples:
            if ex.id in seen:
                raise DatasetError(f"dataset {name!r}: duplicate example id {ex.id!r}")
            seen.add(ex.id)

    # -- sequence protocol -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)

    @overload
    def __getitem__(self, index: int) -> Example: ...

    @overload
    def __getitem__(self, index: slice) -> YesNoDataset: ...

    def __getitem__(self, index: int | slice) -> Example | YesNoDataset:
        if isinstance(index, slice):
            return self._derive(self.examples[index])
        return self.examples[index]

    def __repr__(self) -> str:
        return f"YesNoDataset({self.name!r}, n={len(self)}, yes={self.n_yes}, no={self.n_no})"

    def _derive(self, examples: Iterable[Example], **info: Any) -> YesNoDataset:
        return YesNoDataset(self.name, examples, {**self.info, **info})

    # -- labels --------------------------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        return [ex.label for ex in self.examples]

    @property
    def n_yes(self) -> int:
        return sum(ex.label == "yes" for ex in self.examples)

    @property
    def n_no(self) -> int:
        return sum(ex.label == "no" for ex in self.examples)

    # -- sampling ------------------------------------------------------------------------------------------
    def shuffled(self, seed: int = 0) -> YesNoDataset:
        """All examples in an order shuffled by ``seed``."""
        examples = list(self.examples)
        random.Random(seed).shuffle(examples)
        return self._derive(examples)

    def balanced(self, limit: int | None, seed: int = 0) -> YesNoDataset:
        """A label-balanced sample, in an order shuffled by ``seed``.

        ``limit`` examples: ``limit // 2`` of each label, the odd one extra being "yes". ``None`` takes the
        largest balanced sample. Raises :class:`DatasetError` if a label has too few examples.
        """
        by_label = {lab: [ex for ex in self.examples if ex.label == lab] for lab in LABELS}
        if limit is None:
            k = min(len(v) for v in by_label.values())
            want = {"yes": k, "no": k}
        else:
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
                raise DatasetError(f"dataset {self.name!r}: limit must be a non-negative int, got {limit!r}")
            want = {"yes": limit - limit // 2, "no": limit // 2}
        rng = random.Random(seed)
        chosen: list[Example] = []
        for lab in LABELS:
            pool = by_label[lab]
            if want[lab] > len(pool):
                raise DatasetError(
                    f"dataset {self.name!r} has only {len(pool)} {lab!r} examples "
                    f"(of {len(self)}); a balanced sample of {limit} needs {want[lab]}; use a smaller limit"
                )
            chosen.extend(rng.sample(pool, want[lab]))
        rng.shuffle(chosen)
        return self._derive(chosen, limit=limit, seed=seed)

    def split(self, split: str, test_fraction: float = 0.3) -> YesNoDataset:
        """The ``"train"`` or ``"test"`` part, assigned by a stable hash of each example's group (else id).

        The assignment depends only on the key and ``test_fraction``, never on order, limit or seed, so the
        two parts never overlap and the same example always lands in the same part.
        """
        if split not in SPLITS:
            raise DatasetError(f"dataset {self.name!r}: split must be 'train' or 'test', got {split!r}")
        if not 0.0 < test_fraction < 1.0:
            raise DatasetError(f"dataset {self.name!r}: test_fraction must be in (0, 1), got {test_fraction!r}")
        want_test = split == "test"
        kept = [ex for ex in self.examples if is_test(ex.split_key, test_fraction) == want_test]
        return self._derive(kept, split=split, test_fraction=test_fraction)

    # -- export --------------------------------------------------------------------------------------------
    def to_jsonl(self, path: str | os.PathLike[str]) -> Path:
        """Write the examples as JSONL (atomically); returns the path."""
        return write_jsonl(path, self.examples)

    def to_dataframe(self) -> pd.DataFrame:
        """A pandas DataFrame with columns id, question, context, label, group."""
        import pandas as pd

        rows = [(ex.id, ex.question, ex.context, ex.label, ex.group) for ex in self.examples]
        return pd.DataFrame(rows, columns=["id", "question", "context", "label", "group"])


# -- JSONL -------------------------------------------------------------------------------------------------


def jsonl_bytes(examples: Iterable[Example]) -> bytes:
    """``examples`` in the normalised JSONL form (one object per line, UTF-8, keys in field order): the bytes
    :func:`write_jsonl` writes, and what a dataset's checksum is computed over."""
    return "".join(json.dumps(ex.to_dict(), ensure_ascii=False) + "\n" for ex in examples).encode("utf-8")


def jsonl_sha256(examples: Iterable[Example]) -> str:
    """The sha256 (hex) of ``examples`` in the normalised JSONL form (:func:`jsonl_bytes`)."""
    return hashlib.sha256(jsonl_bytes(examples)).hexdigest()


def write_jsonl(path: str | os.PathLike[str], examples: Iterable[Example]) -> Path:
    """Write ``examples`` to ``path`` as JSONL, one object per line, atomically; returns the path.
    A path ending in ``.gz`` is written gzip-compressed (byte-stable: no timestamp in the header)."""
    data = jsonl_bytes(examples)
    if str(path).endswith(".gz"):
        data = gzip.compress(data, compresslevel=9, mtime=0)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


GZIP_MAGIC = b"\x1f\x8b"


def jsonl_stem(path: str | os.PathLike[str]) -> str:
    """The dataset name of a JSONL file: its name without ``.jsonl`` / ``.jsonl.gz``."""
    name = Path(path).name
    return Path(name[:-3] if name.endswith(".gz") else name).stem


def read_jsonl(path: str | os.PathLike[str]) -> list[Example]:
    """Read a JSONL file of examples (see the module docs for the format); a gzip-compressed file
    (``.jsonl.gz``, recognised by its content) is read the same way.

    Raises :class:`DatasetError` naming the file and 1-based line number for any malformed line (invalid
    JSON, bytes that are not UTF-8, text that is not valid Unicode, a bad field) or a duplicate id, and
    naming the path for a missing, unreadable, corrupt-gzip file or a folder.
    """
    path = Path(path)
    if path.is_dir():
        raise DatasetError(f"dataset path {path} is a folder, not a JSONL file")
    if not path.is_file():
        if path.exists():
            raise DatasetError(f"dataset path {path} is not a regular file")
        raise DatasetError(f"dataset file not found: {path}")
    examples: list[Example] = []
    first_line: dict[str, int] = {}
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == GZIP_MAGIC
        opener = gzip.open if compressed else open
        with opener(path, "rb") as f:
            for lineno, data in enumerate(f, start=1):
                where = f"{path}{' (gzip)' if compressed else ''}:{lineno}"
                try:
                    line = data.decode("utf-8-sig" if lineno == 1 else "utf-8")
                except UnicodeDecodeError as e:
                    hint = "" if compressed else "; is the file compressed or binary? (a .jsonl.gz file is read as gzip)"
                    raise DatasetError(f"{where}: not UTF-8 text (byte 0x{data[e.start]:02x} at column {e.start + 1}){hint}") from None
                if not line.strip():
                    continue
                try:
                    ex = _parse_record(line, default_id=f"{jsonl_stem(path)}-{lineno}")
                except DatasetError as e:
                    raise DatasetError(f"{where}: {e}") from None
                if ex.id in first_line:
                    raise DatasetError(f"{where}: duplicate id {ex.id!r} (first used on line {first_line[ex.id]})")
                first_line[ex.id] = lineno
                examples.append(ex)
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DatasetError(f"dataset file {path} is a corrupt or truncated gzip file: {e}") from None
    except OSError as e:
        raise DatasetError(f"cannot read dataset file {path}: {e.strerror or e}") from None
    log.debug("read %d examples from %s", len(examples), path)
    return examples


def _parse_record(line: str, default_id: str) -> Example:
    """One JSONL line -> Example; errors are DatasetError without location."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise DatasetError(f"invalid JSON ({e.msg} at column {e.colno})") from None
    except ValueError as e:  # e.g. an integer longer than Python's digit limit
        raise DatasetError(f"invalid JSON ({e})") from None
    except RecursionError:
        raise DatasetError("invalid JSON (nested too deeply)") from None
    if not isinstance(record, dict):
        raise DatasetError(f"expected a JSON object, got {type(record).__name__}")
    return example_from_record(record, default_id)


def example_from_record(record: dict[str, Any], default_id: str) -> Example:
    """A dict with ``question`` and ``label`` (optional ``id``, ``context``, ``group``; the fields of a JSONL
    line) -> Example; errors are DatasetError without location."""
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        what = "missing" if question is None else f"got {json.dumps(question, ensure_ascii=False)}"
        raise DatasetError(f"question must be a non-empty string ({what})")
    if "label" not in record:
        raise DatasetError('missing label (must be "yes" or "no")')
    label = normalise_label(record["label"])
    return Example(
        question=question,
        label=label,
        id=_optional_key(record, "id", None) or default_id,
        context=_optional_str(record, "context"),
        group=_optional_key(record, "group", None),
    )


def _optional_key(record: dict[str, Any], key: str, default: str | None) -> str | None:
    value = record.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise DatasetError(f"{key} must be a non-empty string or an integer, got {json.dumps(value)}")
    return str(value)


def _optional_str(record: dict[str, Any], key: str) -> str | None:
    value = record.get(key)
    if value is not None and not isinstance(value, str):
        raise DatasetError(f"{key} must be a string, got {json.dumps(value, ensure_ascii=False)}")
    return value
