"""Cached, resumable stages: a stage's output folder is keyed by the hash of everything it reads.

A stage is a function ``fn(ctx: StageContext) -> dict`` that writes its files into ``ctx.work`` and returns
a small JSON-able summary. :meth:`StageStore.run` runs it at most once per *key*, where

    key = sha256(stage name, the config it reads, the keys of its upstream stages, the package version)

so changing one config section re-runs exactly the stages that read it and every stage downstream of them
(their upstream keys change), and nothing else.

Crash safety: the stage writes into a temporary sibling folder owned by its writer
(``.NAME-KEY.partial-PID-UUID``); when ``fn`` returns, ``done.json`` (key, inputs, summary, timing, and the
list of every file with its size) is written last and the folder is renamed to ``NAME-KEY``. A folder with
that name whose ``done.json`` has the key and whose files are all there with their sizes is a finished
stage; anything else is run again. Leftover ``.partial`` folders are removed only when their writer (the
PID in the name) is dead. A long stage can keep resumable state in ``ctx.checkpoint_dir``
(``.checkpoints/NAME-KEY``), which survives an interrupted run and is deleted once the stage completes.

Concurrency: a stage is made under an exclusive lock on ``.NAME-KEY.lock`` (``fcntl.flock``): a second
process asking for the same stage waits, then finds it finished and reuses it, so two runs never write or
delete each other's folders and a stage is computed once. (The study pipeline also locks its whole output
folder and refuses a second run at once: :func:`nasa_lens.study.run_study`.)
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasa_lens.io import atomic_dir, file_lock, pid_alive, read_json, write_json

__all__ = ["DONE_FILE", "StageContext", "StageOutput", "StageStore", "stage_key", "safe_name"]

logger = logging.getLogger(__name__)

DONE_FILE = "done.json"
CHECKPOINTS = ".checkpoints"


def safe_name(text: str) -> str:
    """``text`` as a file-name piece (``/``, spaces and other odd characters become ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "_"


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def stage_key(name: str, inputs: Mapping[str, Any], upstream: Mapping[str, str], version: str) -> str:
    """The cache key of a stage: sha256 of its name, inputs, upstream keys and the package version."""
    payload = {"stage": name, "inputs": inputs, "upstream": dict(sorted(upstream.items())), "version": version}
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()


@dataclass(frozen=True)
class StageOutput:
    """A finished stage: its folder and the summary its function returned.

    Attributes:
        name: the stage name (``"nas@smollm2-135m-instruct"``).
        key: the full cache key (hex sha256).
        path: the finished folder.
        summary: the JSON summary the stage returned (also in ``done.json``).
        cached: True when this run found it finished (the function was not called).
        seconds: how long the function ran, wall clock (when it ran; the original duration when cached).
        cpu_seconds: the process CPU time it used (all threads; on a busy machine a better measure of the
            work than ``seconds``).
    """

    name: str
    key: str
    path: Path
    summary: dict[str, Any]
    cached: bool
    seconds: float
    cpu_seconds: float = float("nan")


@dataclass
class StageContext:
    """What a stage function gets.

    Attributes:
        name: the stage name.
        key: its cache key.
        work: the (temporary) folder to write outputs into; renamed to the final folder on success.
        checkpoint_dir: a folder that survives an interrupted run (for resumable state).
        upstream: the finished upstream stages by name.
        inputs: the inputs hashed into ``key``.
    """

    name: str
    key: str
    work: Path
    checkpoint_dir: Path
    upstream: dict[str, StageOutput]
    inputs: dict[str, Any] = field(default_factory=dict)


class StageStore:
    """The stage folders under ``root`` (``root/NAME-KEY12/``), with the run-once logic."""

    def __init__(self, root: str | os.PathLike[str], version: str) -> None:
        self.root = Path(root)
        self.version = version
        self.root.mkdir(parents=True, exist_ok=True)

    def folder(self, name: str, key: str) -> Path:
        return self.root / f"{safe_name(name)}-{key[:12]}"

    def checkpoint_dir(self, name: str, key: str) -> Path:
        return self.root / CHECKPOINTS / self.folder(name, key).name

    def key(self, name: str, inputs: Mapping[str, Any], upstream: Sequence[StageOutput] = ()) -> str:
        return stage_key(name, inputs, {u.name: u.key for u in upstream}, self.version)

    def lookup(self, name: str, key: str) -> StageOutput | None:
        """The finished stage with this key, or None (also when a file listed in its ``done.json`` is missing
        or has another size: a stage is reused only when it is complete)."""
        folder = self.folder(name, key)
        done = folder / DONE_FILE
        if not done.is_file():
            return None
        try:
            meta = read_json(done)
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get("key") != key:
            return None
        problem = _incomplete(folder, meta.get("files"))
        if problem:
            logger.warning("stage %s: %s is incomplete (%s); running it again", name, folder.name, problem)
            return None
        return StageOutput(name, key, folder, meta.get("summary") or {}, True, float(meta.get("seconds", 0.0)),
                           float(meta.get("cpu_seconds") or float("nan")))

    def lock_file(self, name: str, key: str) -> Path:
        return self.root / f".{self.folder(name, key).name}.lock"

    def remove_stale(self, name: str, key: str) -> list[Path]:
        """Remove the leftover ``.partial`` folders of this stage whose writer is dead; return them."""
        removed = []
        for partial in self.root.glob(f".{self.folder(name, key).name}.partial-*"):
            owner = _partial_owner(partial.name)
            if owner is not None and owner != os.getpid() and pid_alive(owner):
                logger.warning("stage %s: leaving %s alone: its writer (pid %d) is alive", name, partial.name, owner)
                continue
            shutil.rmtree(partial, ignore_errors=True)
            removed.append(partial)
        return removed

    def remove_all_stale(self) -> list[Path]:
        """Remove every leftover ``.partial`` folder in the store whose writer is dead (of any stage, also one
        no plan asks for any more); return them."""
        removed = []
        for partial in self.root.glob(".*.partial-*"):
            owner = _partial_owner(partial.name)
            if partial.is_dir() and owner is not None and owner != os.getpid() and not pid_alive(owner):
                shutil.rmtree(partial, ignore_errors=True)
                removed.append(partial)
        return removed

    def run(
        self,
        name: str,
        inputs: Mapping[str, Any],
        upstream: Sequence[StageOutput],
        fn: Callable[[StageContext], dict[str, Any] | None],
    ) -> StageOutput:
        """The finished stage ``name`` for these inputs: found in the store, or made by calling ``fn`` once.

        Another process making the same stage at the same time is waited for (then its result is reused)."""
        inputs = json.loads(_canonical(inputs))
        key = self.key(name, inputs, upstream)
        found = self.lookup(name, key)
        if found is not None:
            logger.info("stage %s: cached (%s)", name, found.path.name)
            return found
        with file_lock(self.lock_file(name, key), what=f"stage {name}"):
            found = self.lookup(name, key)  # another process may have made it while we waited
            if found is not None:
                logger.info("stage %s: cached (%s)", name, found.path.name)
                return found
            return self._make(name, key, inputs, upstream, fn)

    def _make(self, name, key, inputs, upstream, fn) -> StageOutput:
        final = self.folder(name, key)
        self.remove_stale(name, key)
        ckpt = self.checkpoint_dir(name, key)
        work = self.root / f".{final.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # on success atomic_dir replaces ``final`` (a damaged or incomplete folder) by ``work``
        with atomic_dir(final, work=work):
            ckpt.mkdir(parents=True, exist_ok=True)
            ctx = StageContext(name, key, work, ckpt, {u.name: u for u in upstream}, dict(inputs))
            logger.info("stage %s: running (key %s)", name, key[:12])
            start, cpu_start = time.perf_counter(), time.process_time()
            summary = fn(ctx) or {}
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
            write_json(
                work / DONE_FILE,
                {
                    "stage": name,
                    "key": key,
                    "version": self.version,
                    "inputs": inputs,
                    "upstream": {u.name: u.key for u in upstream},
                    "summary": summary,
                    "seconds": seconds,
                    "cpu_seconds": cpu_seconds,
                    "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "files": _file_list(work),
                },
            )
        shutil.rmtree(ckpt, ignore_errors=True)
        with contextlib.suppress(OSError):
            (self.root / CHECKPOINTS).rmdir()  # only when empty
        logger.info("stage %s: done in %.1fs", name, seconds)
        # Read back what was written, so a fresh summary equals a cached one (NaN -> None, tuples -> lists).
        return StageOutput(name, key, final, read_json(final / DONE_FILE)["summary"], False, seconds, cpu_seconds)


def _file_list(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` (but ``done.json``) as ``{relative path: size in bytes}``."""
    return {
        p.relative_to(folder).as_posix(): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder).as_posix() != DONE_FILE
    }


def _incomplete(folder: Path, files: Any) -> str | None:
    """Why the finished-looking ``folder`` is not complete (``None``: it is)."""
    if not isinstance(files, dict):
        return "done.json has no file list"
    for rel, size in files.items():
        path = folder / rel
        if not path.is_file():
            return f"{rel} is missing"
        if path.stat().st_size != size:
            return f"{rel} has {path.stat().st_size} bytes, done.json says {size}"
    return None


_PARTIAL_RE = re.compile(r"\.partial-(\d+)(?:-[0-9a-f]+)?$")


def _partial_owner(folder_name: str) -> int | None:
    m = _PARTIAL_RE.search(folder_name)
    return int(m.group(1)) if m else None
