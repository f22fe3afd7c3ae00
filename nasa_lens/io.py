"""Files: the user cache folder and atomic writes.

Every file nasa-lens writes goes through :func:`atomic_path`: the data is written to a temporary file in
the same folder and renamed over the target only when complete, so an interrupted run never leaves a
half-written file and never destroys the previous version. Whole folders (a converted model, a finished
stage) go through :func:`atomic_dir` the same way.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)

__all__ = ["cache_dir", "atomic_path", "atomic_dir", "write_text", "write_json", "read_json"]


def cache_dir(*parts: str) -> Path:
    """The nasa-lens cache folder (``$NASA_LENS_CACHE``, else ``$XDG_CACHE_HOME/nasa-lens``, else
    ``~/.cache/nasa-lens``), joined with ``parts`` and created."""
    root = os.environ.get("NASA_LENS_CACHE")
    if root:
        base = Path(root)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "nasa-lens"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only if the block succeeds.

    On an exception the temporary file is removed and ``target`` is left exactly as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs follow the umask like open() does
    try:
        yield tmp_path
        # Again after the block: a writer that recreates the file (safetensors' save_file does) makes it 0600.
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str], *, work: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """Yield a new temporary folder beside ``target``; when the block succeeds, ``target`` is replaced by it
    (an existing ``target`` is removed first). On an exception the temporary folder is removed and
    ``target`` is left as it was.

    ``work``: the temporary folder to use (created here; it must not exist), e.g. a name that tells a later
    run what a leftover folder is; default a fresh ``.NAME.XXXX`` beside ``target``.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if work is None:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    else:
        tmp = Path(work)
        tmp.mkdir(parents=True)
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_json(target: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``target`` atomically (NaN written as null)."""
    return write_text(target, json.dumps(_finite(obj), indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _finite(obj: Any) -> Any:
    """Replace NaN/inf floats by None so the JSON is strict."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return _finite(obj.item())
    return obj
