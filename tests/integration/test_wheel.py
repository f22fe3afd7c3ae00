"""The wheel is the product: build it from the package's files alone, install it into a clean folder outside the
repository, and from another folder use it as a user would: import it (from there, not from the checkout),
load every shipped dataset, evaluate tiny-random, write a figure with its plotly bundle, read the study
presets, and run the CLI (``nasa-lens`` script, ``python -m nasa_lens``, ``--version``, ``--json``).

Offline: the wheel is built with the setuptools already installed (``--no-build-isolation``) and installed
with ``--no-deps`` (torch and the rest come from the running environment)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Run by the wheel's Python in a folder outside the repository: prints one JSON object.
USER_SCRIPT = r"""
import json, sys
from pathlib import Path
import nasa_lens as nl
from nasa_lens.datasets import list_datasets, load_dataset

out = {"file": nl.__file__, "version": nl.__version__}
from importlib.metadata import version
out["dist_version"] = version("nasa-lens")
frame = list_datasets()
shipped = frame["kind"].eq("generator")
if "shipped" in frame.columns:  # datasets carried inside the package (nasa_lens/datasets/data)
    shipped |= frame["shipped"].astype(bool)
    out["shipped"] = sorted(frame.loc[frame["shipped"].astype(bool), "name"])
out["datasets"] = {}
for name in frame.loc[shipped, "name"]:
    ds = load_dataset(name, limit=4, seed=0)
    out["datasets"][name] = sorted(ex.label for ex in ds)
model = nl.load_model("tiny-random")
result = nl.evaluate(model, load_dataset("arithmetic", limit=4, seed=0), n_boot=10, progress=False)
out["eval_n"] = result.n
nas = nl.scan_nas(model, load_dataset("arithmetic", limit=4, seed=0), progress=False)
from nasa_lens.plots import nas_heatmap, save_figure
written = save_figure(nas_heatmap(nas), Path("figs") / "nas", png=False, include_plotlyjs="directory")
out["figures"] = sorted(p.name for p in Path("figs").iterdir())
out["plotly_bundle"] = (Path("figs") / "plotly.min.js").stat().st_size
cfg = nl.load_config(None, quick=True)
out["preset_toml"] = "[data]" in cfg.to_toml()
print(json.dumps(out))
"""


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("setuptools", reason="the offline wheel build (--no-build-isolation) needs setuptools: pip install '.[dev]'")
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"  # only what a source distribution carries: the build never sees tests/, results/, .venv/
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "nasa_lens", src / "nasa_lens", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = base / "dist"
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(src)], base, env)
    (wheel,) = dist.glob("nasa_lens-*.whl")
    target = base / "target"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "-q", "--target", str(target), str(wheel)], base, env)
    user = base / "user"  # the user's folder: neither the repository nor the install
    user.mkdir()
    return {"wheel": wheel, "target": target, "user": user}


def _user_env(target: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    # the install first: it precedes site-packages, where an editable install of the checkout may live
    env.update(PYTHONPATH=str(target), PYTHONNOUSERSITE="1", PIP_NO_INDEX="1")
    return env


@pytest.mark.slow
def test_wheel_carries_the_package(installed: dict[str, Path]) -> None:
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    modules = {n for n in names if n.endswith(".py")}
    expected = {str(p.relative_to(ROOT)).replace(os.sep, "/") for p in (ROOT / "nasa_lens").rglob("*.py") if "__pycache__" not in p.parts}
    assert expected - modules == set()
    assert not [n for n in names if n.startswith(("tests/", "notebooks/", "results/", "benchmarks/"))]
    data = ROOT / "nasa_lens" / "datasets" / "data"  # datasets shipped inside the package, when there are any
    if data.is_dir():
        shipped = {str(p.relative_to(ROOT)).replace(os.sep, "/") for p in data.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
        assert shipped - set(names) == set()
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(installed["wheel"]).read(meta).decode()
    import nasa_lens

    assert f"Version: {nasa_lens.__version__}" in text
    entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "nasa-lens = nasa_lens.cli:main" in zipfile.ZipFile(installed["wheel"]).read(entry).decode()


@pytest.mark.slow
def test_installed_wheel_works_from_another_folder(installed: dict[str, Path]) -> None:
    target, user = installed["target"], installed["user"]
    env = _user_env(target)
    proc = _run([sys.executable, "-c", USER_SCRIPT], user, env)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(out["file"]).resolve().is_relative_to(target.resolve())  # the installed copy, not the checkout
    assert out["version"] == out["dist_version"]
    assert "arithmetic" in out["datasets"] and len(out["datasets"]) >= 11
    if (ROOT / "nasa_lens" / "datasets" / "data").is_dir():  # the real datasets, read from the installed package
        assert {"strategyqa", "boolq", "gsm8k-verify"} <= set(out["shipped"]) <= set(out["datasets"])
    assert all(labels == ["no", "no", "yes", "yes"] for labels in out["datasets"].values()), out["datasets"]
    assert out["eval_n"] == 4
    assert out["figures"] == ["nas.html", "plotly.min.js"] and out["plotly_bundle"] > 1_000_000
    assert out["preset_toml"]


@pytest.mark.slow
def test_installed_cli(installed: dict[str, Path]) -> None:
    import nasa_lens

    target, user = installed["target"], installed["user"]
    env = _user_env(target)
    script = target / "bin" / "nasa-lens"
    assert _run([str(script), "--version"], user, env).stdout.strip() == f"nasa-lens {nasa_lens.__version__}"
    assert _run([sys.executable, "-m", "nasa_lens", "--version"], user, env).stdout.strip() == f"nasa-lens {nasa_lens.__version__}"
    models = json.loads(_run([sys.executable, "-m", "nasa_lens", "models", "--json"], user, env).stdout)
    assert {m["name"] for m in models} >= {"smollm2-135m-instruct", "tiny-random"}
    proc = _run([str(script), "-q", "eval", "--model", "tiny-random", "--data", "arithmetic", "--limit", "4", "--n-boot", "10",
                 "--out", "eval", "--json"], user, env)
    rows = json.loads(proc.stdout)
    metrics = json.loads((user / "eval" / "metrics.json").read_text())
    assert metrics["n"] == 4
    values = {r["metric"]: r["value"] for r in rows}  # the printed table's rows are the file's numbers
    assert {"accuracy", "pr_gap", "yes_rate"} <= set(values)
    assert all(values[k] == pytest.approx(metrics[k]) for k in values if values[k] is not None)
    assert "it/s" not in proc.stderr  # -q: no progress bar
