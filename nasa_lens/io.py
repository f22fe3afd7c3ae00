"""Files: the user cache folder and atomic writes.

Every file nasa-lens writes goes through :func:`atomic_path`: the data is written to a temporary file in
the same folder and renamed over the target only when complete, so an interrupted run never leaves a
half-written file and never destroys the previous version. Whole folders (a converted model, a finished
stage) go through :func:`atomic_dir` the same way.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)

try:  # POSIX advisory locks; elsewhere the locks below are no-ops
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

from nasa_lens.vocab import REPORT_HTML_FILE, NasaLensError

__all__ = [
    "cache_dir", "cache_writable", "check_cache_writable", "CacheDirError", "atomic_path", "atomic_dir", "write_text",
    "write_json", "write_csv_gz", "read_json", "file_lock", "FolderInUseError", "pid_alive", "fault_point", "remove_stale_temporaries",
    "OutputDirError", "check_out_dir", "check_out_file", "atomic_output",
]

# ------------------------------------------------------------------------------------------------ fault injection

FAULT_ENV = "NASA_LENS_FAULT_AT"
"""Testing aid: with ``NASA_LENS_FAULT_AT=N`` the process dies (``os._exit(FAULT_EXIT_CODE)``, no cleanup, like
a SIGKILL) at the N-th :func:`fault_point` it reaches: before and inside every atomic write and before every
folder is published, so a test can interrupt a run at any of those points reproducibly."""
FAULT_EXIT_CODE = 86
_fault_count = 0


def fault_point(where: str = "") -> None:
    """Count one fault point; die here if ``$NASA_LENS_FAULT_AT`` names this one (see :data:`FAULT_ENV`)."""
    global _fault_count
    at = os.environ.get(FAULT_ENV)
    if not at:
        return
    _fault_count += 1
    if _fault_count == int(at):
        os.write(2, f"nasa-lens: injected fault {_fault_count} at {where}\n".encode())
        os._exit(FAULT_EXIT_CODE)


CACHE_ENV = "NASA_LENS_CACHE"


class CacheDirError(NasaLensError, OSError):
    """The cache folder (``$NASA_LENS_CACHE``) cannot be used: a file, or a folder that cannot be created."""


def _cache_base() -> tuple[Path, str]:
    """``(cache root, how to name it in a message)``."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser(), f"{CACHE_ENV}={root}"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = (Path(xdg) if xdg else Path.home() / ".cache") / "nasa-lens"
    return base, f"the cache folder {base} (set {CACHE_ENV} to use another)"


def cache_dir(*parts: str) -> Path:
    """The nasa-lens cache folder (``$NASA_LENS_CACHE``, else ``$XDG_CACHE_HOME/nasa-lens``, else
    ``~/.cache/nasa-lens``), joined with ``parts`` and created.

    A read-only cache is usable for what is already in it: an existing folder is returned as it is (check
    :func:`cache_writable` before writing into it). Raises :class:`CacheDirError` naming the variable when the
    root is a file, or when the folder is missing and cannot be created."""
    base, name = _cache_base()
    if base.exists() and not base.is_dir():
        raise CacheDirError(f"{name} is a file, not a folder; point {CACHE_ENV} to a folder")
    path = base.joinpath(*parts)
    if path.is_dir():
        return path  # writable or not: what is there can be read
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheDirError(
            f"{name}: cannot create {path} ({exc.strerror or exc}); point {CACHE_ENV} to a writable folder"
        ) from None
    return path


def cache_path(*parts: str) -> Path:
    """Where ``parts`` live in the cache folder, created or not (nothing is created: a lookup in a read-only or
    not yet existing cache is no error). Raises :class:`CacheDirError` when the cache root is a file."""
    base, name = _cache_base()
    if base.exists() and not base.is_dir():
        raise CacheDirError(f"{name} is a file, not a folder; point {CACHE_ENV} to a folder")
    return base.joinpath(*parts)


def cache_writable(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` (a cache entry to be written, or a folder) can be created: its nearest existing
    folder is writable. False on a read-only cache, where the caller computes without caching or says so
    (:func:`check_cache_writable`)."""
    probe = Path(path)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


def check_cache_writable(path: str | os.PathLike[str], what: str) -> None:
    """Raise :class:`CacheDirError` naming the cache variable when ``what`` (missing from the cache) cannot be
    written at ``path``: a read-only cache is usable only for what is already in it."""
    if not cache_writable(path):
        _, name = _cache_base()
        raise CacheDirError(f"{name} is read-only and does not hold {what} yet ({path}); run once with a writable "
                            f"{CACHE_ENV} to fill it, or point {CACHE_ENV} to a writable folder")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only if the block succeeds.

    On an exception the temporary file is removed and ``target`` is left exactly as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.pid{os.getpid()}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs follow the umask like open() does
    try:
        fault_point(f"before writing {target}")
        yield tmp_path
        fault_point(f"inside the write of {target} (temporary written, not renamed)")
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
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.pid{os.getpid()}.", suffix=".partial", dir=target.parent))
    else:
        tmp = Path(work)
        tmp.mkdir(parents=True)
    try:
        yield tmp
        fault_point(f"before publishing the folder {target}")
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


def write_csv_gz(target: str | os.PathLike[str], frame: Any, *, float_format: str | None = "%.6g") -> Path:
    """Write a pandas ``frame`` (no index) to ``target`` as gzip CSV, atomically and byte-stable: the gzip
    header holds no file name and no time, so the same frame gives the same bytes (a committed file changes in
    git only when its numbers do)."""
    import gzip

    text = frame.to_csv(index=False, float_format=float_format)
    with atomic_path(target) as tmp, open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(text.encode("utf-8"))
    return Path(target)


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


# ------------------------------------------------------------------------------------------------ locks


class FolderInUseError(NasaLensError, RuntimeError):
    """Another live process holds the lock of a folder this run needs (two runs on one study folder)."""


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (the owner test of leftover temporary folders)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], *, wait: bool = True, what: str | None = None) -> Iterator[None]:
    """Hold an exclusive advisory lock (``fcntl.flock``) on the file ``path`` for the block.

    ``wait=False``: fail at once with :class:`FolderInUseError` naming ``what`` and the holder (its pid and
    start time, which the holder writes into the file) instead of waiting. The kernel drops the lock when the
    holder dies, however it dies, so a killed run never leaves a stale lock. The file is removed on release;
    a waiter that wakes on a removed file retries on the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover
        yield
        return
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = ""
            with contextlib.suppress(OSError):
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            raise FolderInUseError(
                f"{what or path.parent} is in use by another nasa-lens run ({holder or 'unknown process'}); "
                "wait for it to finish or use another folder"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed the file between our open and our lock: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


_TMP_RE = None


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove what :func:`atomic_path` / :func:`atomic_dir` left in ``folder`` (not below it) when their process
    was killed mid-write: ``.NAME.pidPID.XXXX.tmp`` files and ``.NAME.pidPID.XXXX.partial`` folders whose PID
    is dead. Returns them."""
    import re

    global _TMP_RE
    _TMP_RE = _TMP_RE or re.compile(r"^\..+\.pid(\d+)\.[^.]+\.(tmp|partial)$")
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for p in sorted(folder.iterdir()):
        m = _TMP_RE.match(p.name)
        if not m or int(m.group(1)) == os.getpid() or pid_alive(int(m.group(1))):
            continue
        if m.group(2) == "tmp" and p.is_file():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
            removed.append(p)
        elif m.group(2) == "partial" and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


# ------------------------------------------------------------------------------------------------ command outputs


class OutputDirError(NasaLensError, ValueError):
    """An output folder (``--out``) that cannot be used: a file, under a file, or not writable."""


def check_out_dir(path: str | os.PathLike[str], *, flag: str = "--out") -> Path:
    """Check, before any computation, that ``path`` can be a command's output folder: not an existing file,
    not below a file, and writable (the folder itself, or its nearest existing parent when it does not exist
    yet). Raises :class:`OutputDirError` naming the path and the reason; returns ``Path(path)``."""
    out = Path(path).expanduser()
    for probe in (out, *out.parents):  # a symlink loop or a broken link anywhere on the path: say so now
        try:
            os.stat(probe)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                while probe.parent != probe and _eloop(probe.parent):
                    probe = probe.parent  # name the link that loops, not a path below it
                raise OutputDirError(f"{flag} {out} cannot be used: {probe} is a symbolic link loop") from None
            if os.path.islink(probe):
                raise OutputDirError(f"{flag} {out} cannot be used: {probe} is a broken symbolic link (to "
                                     f"{os.readlink(probe)})") from None
            continue
        break
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"{flag} {out} is an existing file, not a folder; choose a folder path")
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise OutputDirError(f"{flag} {out} cannot be created: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        where = "it" if probe == out else f"its parent folder {probe}"
        raise OutputDirError(f"{flag} {out}: cannot write in {where} (permission denied)")
    return out


def check_out_file(path: str | os.PathLike[str], *, flag: str = "--out") -> Path:
    """Check, before any work, that ``path`` can be an output *file*: not a folder, and its folder can hold a
    new file (:func:`check_out_dir`: not a file, not below a file, writable; a read-only file system counts
    as not writable). Raises :class:`OutputDirError`; returns ``Path(path)``."""
    out = Path(path).expanduser()
    if out.is_dir():
        raise OutputDirError(f"{flag} {out} is a folder; give the path of the file to write (e.g. {out / REPORT_HTML_FILE})")
    parent = out.parent
    if not parent.is_dir():
        check_out_dir(parent, flag=f"{flag} {out}: its folder")
    elif not os.access(parent, os.W_OK | os.X_OK):
        raise OutputDirError(f"{flag} {out}: cannot write in its folder {parent} (permission denied or a read-only file system)")
    return out


def _eloop(path: Path) -> bool:
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def _merge_back(old: Path, new: Path) -> None:
    """Move every entry of ``old`` that ``new`` lacks into ``new``, then remove ``old``."""
    for entry in sorted(old.iterdir()):
        if not os.path.lexists(new / entry.name):
            os.replace(entry, new / entry.name)
    shutil.rmtree(old, ignore_errors=True)


def recover_output(out: str | os.PathLike[str]) -> None:
    """Finish or undo what a killed :func:`atomic_output` left beside ``out``: a ``.NAME.pidPID.*.old`` folder
    (the previous outputs moved aside) of a dead writer is moved back (whole when ``out`` is missing, else its
    entries that ``out`` lacks); ``.partial`` folders and ``.tmp`` files of dead writers are removed."""
    import re

    out = Path(out)
    parent = out.parent
    if not parent.is_dir():
        return
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.pid(\d+)\.[^.]+\.old$")
    for p in sorted(parent.iterdir()):
        m = pattern.match(p.name)
        if not m or int(m.group(1)) == os.getpid() or pid_alive(int(m.group(1))) or not p.is_dir():
            continue
        if not out.exists():
            os.replace(p, out)
        else:
            _merge_back(p, out)
    remove_stale_temporaries(parent)
    remove_stale_temporaries(out)


@contextlib.contextmanager
def atomic_output(out: str | os.PathLike[str]) -> Iterator[Path]:
    """A command's outputs appear together: yield a temporary folder beside ``out`` to write every output file
    into; when the block succeeds it becomes ``out`` in one rename. Files already in ``out`` that the command
    did not write (a finetune's ``checkpoints/``, files of your own) are kept: the old folder is renamed aside,
    the new one renamed into place, and the other entries moved back. A reader therefore sees either all the
    old outputs or all the new ones, never a mix; an interrupted run leaves ``out`` as it was, and its
    temporaries are cleaned (or the old folder restored) by :func:`recover_output` on the next run.
    """
    out = Path(os.path.abspath(check_out_dir(out)))
    if out.is_symlink():
        out = out.resolve()  # publish into the folder it points at, keep the link
    recover_output(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and (os.path.ismount(out) or Path.cwd().resolve().is_relative_to(out.resolve())):
        # ``--out .`` (or a folder holding the working directory, or a mount point) cannot be renamed away:
        # its files are replaced one by one, each atomically, as before
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name or 'out'}.pid{os.getpid()}.", suffix=".partial", dir=out))
        try:
            yield tmp
            for entry in sorted(tmp.iterdir()):
                dst = out / entry.name
                if os.path.lexists(dst) and (entry.is_dir() or dst.is_dir()):  # rename cannot replace these
                    if dst.is_dir() and not dst.is_symlink():
                        shutil.rmtree(dst)
                    else:
                        dst.unlink()
                os.replace(entry, dst)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    tag = f".{out.name}.pid{os.getpid()}."
    tmp = Path(tempfile.mkdtemp(prefix=tag, suffix=".partial", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)
    old: Path | None = None
    try:
        yield tmp
        fault_point(f"before publishing the outputs in {out}")
        if not out.exists():
            os.replace(tmp, out)
            return
        old = Path(tempfile.mkdtemp(prefix=tag, suffix=".old", dir=out.parent))
        os.replace(out, old)  # ``old`` is an empty folder: rename replaces it
        fault_point(f"between moving the old outputs of {out} aside and publishing the new ones")
        os.replace(tmp, out)
        fault_point(f"after publishing the outputs in {out}, before the other files are moved back")
        _merge_back(old, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.is_dir():
            if not out.exists():
                os.replace(old, out)
            else:
                _merge_back(old, out)
        raise
