"""The floor plan, checked: no import cycle anywhere in the package (function-level and ``TYPE_CHECKING`` imports
included) and
the layering: library modules never import the layers above them (jobs, study, cli, commands), ``nas``
imports neither plots, models, datasets nor the fine-tune, and the CLI parser is built without torch."""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import nasa_lens

PACKAGE = Path(nasa_lens.__file__).parent
TOP = ("nasa_lens.jobs", "nasa_lens.study", "nasa_lens.cli", "nasa_lens.commands", "nasa_lens.__main__")
"""The layers that may use anything; nothing below them may import them."""
SHIMS = {
    "nasa_lens.stages": "nasa_lens.study.stages",
    "nasa_lens.plots_causal": "nasa_lens.plots.causal",
    "nasa_lens.plots_nasa": "nasa_lens.plots.finetune",
    "nasa_lens.plots_study": "nasa_lens.plots.study",
    "nasa_lens.nasa": "nasa_lens.finetune",
}
"""Old import paths kept for users: each warns (DeprecationWarning naming the new path) and re-exports its new
home; nothing in the repository imports them."""
MOVED_NAMES = {
    "nasa_lens.jobs.dla.PathsConfig": "nasa_lens.jobs.path_patching.PathsConfig",
    "nasa_lens.jobs.dla.run_paths": "nasa_lens.jobs.path_patching.run_paths",
    "nasa_lens.commands.dla._paths": "nasa_lens.commands.path_patching._paths",
}
"""Names that moved to another module, kept at the old one by a module ``__getattr__`` that warns
(DeprecationWarning naming the new path); nothing in the repository imports them from there."""
REPO = PACKAGE.parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The package module ``name`` refers to (``a.b.c`` may be the attribute ``c`` of module ``a.b``)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str, path: Path, modules: dict[str, Path], *, type_only: bool = True) -> set[str]:
    """Every package module ``module`` imports: at the top, inside functions and (``type_only``) under
    ``TYPE_CHECKING`` (a type-only import is still a dependency: a cycle through types is a cycle),
    ``importlib.import_module("...")`` with a literal name included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    if not type_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skip.update(id(n) for child in node.body for n in ast.walk(child))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_pkg else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        elif (isinstance(node, ast.Call) and ast.unparse(node.func).endswith("import_module") and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names = [node.args[0].value]
        for name in names:
            target = _resolve(name, modules)
            if target and target != module and not module.startswith(target + "."):
                found.add(target)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_sees_function_level_imports_and_cycles():
    modules = {"nasa_lens.a": Path("a.py"), "nasa_lens.b": Path("b.py")}
    assert _cycles({"nasa_lens.a": {"nasa_lens.b"}, "nasa_lens.b": {"nasa_lens.a"}}) == [["nasa_lens.a", "nasa_lens.b"]]
    assert _cycles({"nasa_lens.a": {"nasa_lens.b"}, "nasa_lens.b": set()}) == []
    assert _resolve("nasa_lens.b.thing", modules) == "nasa_lens.b"


def test_no_import_cycle(graph):
    assert _cycles(graph) == []


def test_graph_has_the_known_edges(graph):
    # sanity: the walker finds top-level, function-level and type-only imports
    assert "nasa_lens.nas" in graph["nasa_lens.finetune.train"]  # top level
    assert "nasa_lens.nas" in graph["nasa_lens.jobs.scan"]  # inside run_scan
    assert "nasa_lens.study.result" in graph["nasa_lens.study.html"]  # under TYPE_CHECKING


def test_the_checker_counts_type_checking_imports(tmp_path):
    pkg = tmp_path / "nasa_lens"
    pkg.mkdir()
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from nasa_lens.b import B\n")
    (pkg / "b.py").write_text("from nasa_lens.a import thing\n")
    modules = {"nasa_lens.a": pkg / "a.py", "nasa_lens.b": pkg / "b.py"}
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    assert graph == {"nasa_lens.a": {"nasa_lens.b"}, "nasa_lens.b": {"nasa_lens.a"}}
    assert _cycles(graph) == [["nasa_lens.a", "nasa_lens.b"]]


def test_library_modules_never_import_the_top_layers(graph):
    bad = {
        m: sorted(t for t in deps if t.startswith(TOP))
        for m, deps in graph.items()
        if not m.startswith(TOP) and m != "nasa_lens" and m not in SHIMS
    }
    assert all(graph[old] == {new} for old, new in SHIMS.items())
    assert {m: d for m, d in bad.items() if d} == {}


def _file_imports(path: Path) -> set[str]:
    """Absolute module names a script, test or notebook (its code cells) imports (``from a import b``: ``a.b``)."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
        sources = ["\n".join(line for line in src.splitlines() if not line.lstrip().startswith(("%", "!"))) for src in sources]
    else:
        sources = [path.read_text(encoding="utf-8")]
    found: set[str] = set()
    for src in sources:
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.update([node.module, *(f"{node.module}.{a.name}" for a in node.names)])
    return found


def test_no_shim_is_imported_anywhere_in_the_repository():
    files = [p for folder in ("nasa_lens", "tests", "experiments", "benchmarks", "notebooks")
             for p in sorted((REPO / folder).rglob("*")) if p.suffix in (".py", ".ipynb") and ".ipynb_checkpoints" not in p.parts]
    files = [p for p in files if not (p.is_relative_to(PACKAGE) and _module_name(p) in SHIMS)]
    users = {str(p.relative_to(REPO)): sorted((set(SHIMS) | set(MOVED_NAMES)) & _file_imports(p)) for p in files}
    assert {f: s for f, s in users.items() if s} == {}


def test_every_shim_warns_with_its_new_path_and_reexports_it():
    code = (
        "import importlib, json, warnings\n"
        f"shims = {SHIMS!r}\n"
        "out = {}\n"
        "for old, new in shims.items():\n"
        "    with warnings.catch_warnings(record=True) as w:\n"
        "        warnings.simplefilter('always')\n"
        "        m = importlib.import_module(old)\n"
        "    n = importlib.import_module(new)\n"
        "    same = all(getattr(m, k) is getattr(n, k) for k in n.__all__)\n"
        "    out[old] = [[str(x.message) for x in w if x.category is DeprecationWarning], same]\n"
        "print(json.dumps(out))\n"
    )
    got = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    for old, new in SHIMS.items():
        messages, same = got[old]
        assert same, old
        assert any(old in m and new in m and "deprecated" in m for m in messages), (old, messages)


def test_nas_imports_no_plots_models_datasets_or_finetune():
    """At run time (its annotations may name ``LoadedModel``)."""
    banned = ("nasa_lens.plots", "nasa_lens.models", "nasa_lens.datasets", "nasa_lens.finetune", "nasa_lens.nasa")
    modules = _modules()
    runtime = _imports("nasa_lens.nas", modules["nasa_lens.nas"], modules, type_only=False)
    assert sorted(t for t in runtime if t.startswith(banned)) == []


def test_finetune_imports_nas_at_the_top():
    tree = ast.parse((PACKAGE / "finetune" / "train.py").read_text())
    top = {n.module for n in tree.body if isinstance(n, ast.ImportFrom)}
    assert "nasa_lens.nas" in top


def test_building_the_parser_imports_no_torch():
    code = "import sys; from nasa_lens.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_modules_stay_small():
    """No module over ~600 lines (the floor-plan goal); the list names any exception with its reason."""
    allowed = {"nasa_lens.nas": "one idea: the NAS formula, hooks, result and its analyses"}
    sizes = {m: len(p.read_text().splitlines()) for m, p in _modules().items()}
    assert {m: n for m, n in sizes.items() if n > 600 and m not in allowed} == {}


FILE_NAME = re.compile(r"^[\w.\-]+\.(csv|json|jsonl|md|html|png|npz|pt|safetensors|js)$")


def _string_literals(path: Path) -> set[str]:
    """The string constants of a module that are not docstrings."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs}


def test_every_file_name_is_a_literal_in_one_module():
    """An output file name (``comparison.csv``, ``done.json``...) is written out once; every other module uses
    its constant (most live in ``vocab.py``)."""
    where: dict[str, list[str]] = {}
    for module, path in _modules().items():
        if module in SHIMS:
            continue
        for literal in _string_literals(path):
            if FILE_NAME.match(literal):
                where.setdefault(literal, []).append(module)
    assert {name: sorted(mods) for name, mods in where.items() if len(mods) > 1} == {}
    assert where["comparison.csv"] == ["nasa_lens.vocab"] and where["done.json"] == ["nasa_lens.study.stages"]


def test_the_prompt_format_check_is_written_once():
    """Every config checks its ``format`` with ``vocab.check_format`` (one message, each config's own error)."""
    pattern = re.compile(r"\bnot in FORMATS\b|\bin FORMATS\b")
    users = [m for m, p in _modules().items() if m != "nasa_lens.vocab" and pattern.search(p.read_text(encoding="utf-8"))]
    assert users == []


CONFIG_MODULES = ("nasa_lens.config", "nasa_lens.causal.config", "nasa_lens.finetune.config", "nasa_lens.jobs.common",
                  "nasa_lens.jobs.scan", "nasa_lens.jobs.evaluate", "nasa_lens.jobs.causal", "nasa_lens.jobs.dla",
                  "nasa_lens.jobs.path_patching", "nasa_lens.jobs.finetune", "nasa_lens.jobs.compare")


def _config_classes() -> list[type]:
    import dataclasses
    import importlib
    import inspect

    out = []
    for name in CONFIG_MODULES:
        module = importlib.import_module(name)
        out += [c for c in vars(module).values() if inspect.isclass(c) and dataclasses.is_dataclass(c) and c.__module__ == name]
    return out


def test_every_config_is_named_config_and_its_field_help_is_written_once():
    """One suffix (``*Config``), one public class per name, and each field's help in one place: its
    ``metadata["help"]`` or its entry in the class docstring's ``Attributes:``, never both."""
    import dataclasses

    from nasa_lens.commands.flags import docstring_help

    classes = _config_classes()
    assert [c.__name__ for c in classes if not c.__name__.endswith("Config")] == []
    twice = {c.__qualname__: [f.name for f in dataclasses.fields(c) if "help" in f.metadata and f.name in docstring_help(c)]
             for c in classes}
    assert {k: v for k, v in twice.items() if v} == {}


def test_no_public_class_name_is_defined_twice():
    where: dict[str, list[str]] = {}
    for module, path in _modules().items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                where.setdefault(node.name, []).append(module)
    assert {n: m for n, m in where.items() if len(m) > 1} == {}


def test_no_module_imports_an_underscore_name_of_another():
    """A helper another module needs is public (or moves there); ``_name`` stays inside its module."""
    found = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nasa_lens") and not node.level:
                found += [f"{module}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    assert found == []


def _page_rows() -> dict[str, set[str]]:
    """docs/architecture.md's module map: first cell (the modules a row is about) -> the backticked names in the row."""
    rows = {}
    for line in (REPO / "docs" / "architecture.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            rows[first] = set(re.findall(r"`([^`]+)`", line))
    return rows


def test_the_architecture_page_names_every_module():
    """Every module of the package has its row in docs/architecture.md (``X.py``), every module of a package
    (``X/``) is named in that package's row."""
    rows = _page_rows()
    firsts = {name for first in rows for name in re.findall(r"`([^`]+)`", first)}
    missing = []
    for module in _modules():
        parts = module.split(".")[1:]
        if not parts:
            continue
        if len(parts) == 1:
            if f"{parts[0]}.py" not in firsts and f"{parts[0]}/" not in firsts:
                missing.append(module)
            continue
        row = next((names for first, names in rows.items() if f"`{parts[0]}/`" in first), set())
        if ".".join(parts[1:]) not in row:
            missing.append(module)
    assert missing == []


LAYERS = (
    ("nasa_lens.vocab", "nasa_lens.io", "nasa_lens.parallel", "nasa_lens.placement", "nasa_lens.heads"),
    ("nasa_lens.models", "nasa_lens.datasets", "nasa_lens.prompts"),
    ("nasa_lens.evaluate", "nasa_lens.ability", "nasa_lens.interventions", "nasa_lens.nas", "nasa_lens.dla", "nasa_lens.copying"),
    ("nasa_lens.causal", "nasa_lens.adapters", "nasa_lens.finetune"),
    ("nasa_lens.debias",),
    ("nasa_lens.plots", "nasa_lens.browser"),
    ("nasa_lens.config",),
    TOP,
)
"""docs/architecture.md's layers, bottom first: a module imports only from its own row or the rows above it."""


def _layer(module: str) -> int | None:
    found = [i for i, row in enumerate(LAYERS) for p in row if module == p or module.startswith(p + ".")]
    return max(found) if found else None


def test_each_layer_imports_only_its_own_row_or_above(graph):
    unplaced = [m for m in graph if _layer(m) is None and m != "nasa_lens" and m not in SHIMS]
    assert unplaced == []  # a new module takes its row here and in docs/architecture.md
    upward = [f"{m} -> {t}" for m, deps in graph.items() if _layer(m) is not None
              for t in deps if _layer(t) is not None and _layer(t) > _layer(m)]
    assert upward == []


def test_renamed_public_names_still_import_with_a_warning():
    import nasa_lens.config as config
    import nasa_lens.debias as debias

    for old, new in (("AblationConfig", "StudyAblationConfig"), ("NASSection", "StudyNASConfig"), ("CompareSection", "StudyCompareConfig")):
        with pytest.warns(DeprecationWarning, match=f"nasa_lens.config.{old} is deprecated; use nasa_lens.config.{new}"):
            assert getattr(config, old) is getattr(config, new)
    with pytest.warns(DeprecationWarning, match="use nasa_lens.debias.ComparisonResult"):
        assert debias.FixComparison is debias.ComparisonResult


@pytest.mark.parametrize("old, new", sorted(MOVED_NAMES.items()))
def test_moved_names_still_import_from_the_old_module_with_a_warning(old, new):
    import importlib

    (old_module, name), new_module = old.rsplit(".", 1), new.rsplit(".", 1)[0]
    with pytest.warns(DeprecationWarning, match=f"{re.escape(old)} is deprecated; import it from {re.escape(new_module)}"):
        assert getattr(importlib.import_module(old_module), name) is getattr(importlib.import_module(new_module), name)
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        importlib.import_module(old_module).nothing_here


def test_the_unit_tier_holds_no_slow_test():
    """tests/unit is the fast tier (docs/testing.md): a test that needs ``slow`` belongs in tests/integration."""
    def marks_slow(path: Path) -> bool:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        return any(isinstance(n, ast.Attribute) and n.attr == "slow" and ast.unparse(n.value) == "pytest.mark" for n in ast.walk(tree))

    assert sorted(p.name for p in (REPO / "tests" / "unit").glob("*.py") if marks_slow(p)) == []
    assert marks_slow(REPO / "tests" / "integration" / "test_nas.py")  # the check sees a mark where there is one
