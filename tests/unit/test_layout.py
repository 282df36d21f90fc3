"""The code's layout rules, checked on the source: a small front door, short files, imports that only point down.

- `vae_core/` holds at most ten modules at its top level; the rest lives in subpackages, one per layer.
- No file in `vae_core/` or `backends/` is over 400 lines.
- Every import (at module level or inside a function) between `vae_core` modules points down the layers below,
  and the import graph has no cycle.
- The NumPy core never imports a framework or a backend: `vae_core.registry` reaches `backends.<name>` by name,
  and `vae_core.triton_guard` imports triton for the guard it exists for.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_TOP_LEVEL_MODULES = 10
MAX_LINES = 400
FRAMEWORKS = {"torch", "tensorflow", "keras", "tf_keras", "jax", "flax", "optax", "backends"}
FRAMEWORK_IMPORTERS = {"vae_core.triton_guard": {"triton"}}  # the guard preloads triton, and only that

# The layers, bottom first: a module may import its own layer and the layers below it.
LAYERS = (
    ("vae_core.checks", "vae_core.triton_guard", "vae_core._moved"),
    ("vae_core.config", "vae_core.model"),
    ("vae_core.io", "vae_core.data", "vae_core.system"),  # system: the machine's memory and threads
    ("vae_core.train",),
    ("vae_core.registry",),
    ("vae_core.deploy",),  # exports: the registry's backends write them, the reference forward checks them
    ("vae_core.metrics",),
    ("vae_core.viz",),
    ("vae_core.callbacks",),  # the built-in callbacks log plots and metrics
    ("vae_core.cli", "vae_core"),  # the command line, and the package's front door
)


def _layer(module: str) -> int:
    best = None
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (rank, len(prefix))
    assert best is not None, f"{module} is in no layer of tests/unit/test_layout.py"
    return best[0]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources(package: str) -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((ROOT / package).rglob("*.py"))}


def _imports(path: Path, known: set[str]) -> set[str]:
    """The modules of `known` that `path` imports, anywhere in the file (`from a import b` counts a.b when a.b is a
    module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in known}


def _top_level_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_vae_core_top_level_holds_at_most_ten_modules():
    modules = sorted(p.name for p in (ROOT / "vae_core").glob("*.py"))
    assert len(modules) <= MAX_TOP_LEVEL_MODULES, modules


@pytest.mark.parametrize("package", ["vae_core", "backends"])
def test_no_file_is_over_400_lines(package):
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / package).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"


def test_every_subpackage_says_what_its_layer_is():
    for init in (ROOT / "vae_core").glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and doc.strip(), f"{init.relative_to(ROOT)} has no docstring saying what the layer is"


def test_imports_point_down_the_layers():
    sources = _sources("vae_core")
    upward = []
    for module, path in sources.items():
        for imported in _imports(path, set(sources)):
            if _layer(imported) > _layer(module):
                upward.append(f"{module} (layer {_layer(module)}) imports {imported} (layer {_layer(imported)})")
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    modules = {**_sources("vae_core"), **_sources("backends")}
    graph = {m: _imports(p, set(modules)) - {m} for m, p in modules.items()}
    # a package's __init__ is imported before its modules; an edge from a module to its own package is not a cycle
    graph = {m: {i for i in edges if not m.startswith(i + ".")} for m, edges in graph.items()}
    seen, on_path, cycles = set(), [], []

    def visit(node: str) -> None:
        if node in on_path:
            cycles.append(" -> ".join(on_path[on_path.index(node):] + [node]))
            return
        if node in seen:
            return
        seen.add(node)
        on_path.append(node)
        for nxt in sorted(graph[node]):
            visit(nxt)
        on_path.pop()

    for node in sorted(graph):
        visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_numpy_core_imports_no_framework_or_backend():
    offenders = []
    for module, path in _sources("vae_core").items():
        allowed = FRAMEWORK_IMPORTERS.get(module, set())
        bad = (_top_level_imports(path) & (FRAMEWORKS | {"triton"})) - allowed
        if bad:
            offenders.append(f"{module} imports {sorted(bad)}")
    assert not offenders, "\n".join(offenders)


def test_old_module_names_import_from_their_new_homes():
    """The flat layout's module names keep working, with a DeprecationWarning naming the new home; a name that is
    in none of a split module's new homes is an AttributeError naming them. In a fresh process: a module imported
    once warns once."""
    code = """
import warnings
warnings.simplefilter("error", DeprecationWarning)
import vae_core, vae_core.train.loop, vae_core.data.rows, vae_core.model.spec
for old, new in (("vae_core.trainer", "vae_core.train.loop"), ("vae_core.spec", "vae_core.model.spec")):
    try:
        __import__(old)
    except DeprecationWarning as e:
        assert new in str(e), e
    else:
        raise AssertionError(old + " did not warn")
warnings.simplefilter("ignore", DeprecationWarning)
import vae_core.trainer, vae_core.spec, vae_core.training
from vae_core.checkpoint import load_checkpoint, LAST_FILE
assert vae_core.trainer.run is vae_core.train.loop.run and vae_core.spec is vae_core.model.spec
assert vae_core.training.rows_shape is vae_core.data.rows.rows_shape and load_checkpoint is vae_core.load_checkpoint
try:
    vae_core.training.no_such_name
except AttributeError as e:
    assert "vae_core.train.schedule" in str(e), e
else:
    raise AssertionError("no AttributeError")
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
