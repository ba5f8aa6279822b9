"""The layering of ``core/``: no import circle, and no package importing a layer above its own.

Every ``import`` and ``from ... import`` of ``core`` is read from the source (deferred imports
inside functions included, since those are how circles hide), so a failure names the edge.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "core"

#: Packages of core/, lowest first: a module may import its own package and any package before it.
LAYERS: tuple[str, ...] = ("base", "imaging", "readers", "models", "serving", "trust", "volumes", "data",
                           "slices", "evaluation", "train", "entry")
#: The modules at the top of core/ that everything may use.
BASE_MODULES = {"config", "errors", "version"}


def module_name(path: Path) -> str:
    """``core/slices/pipeline.py`` -> ``core.slices.pipeline``; a package's ``__init__`` -> the package."""
    parts = path.relative_to(CORE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    """The layer a ``core`` module belongs to (``core.slices.pipeline`` -> ``slices``)."""
    parts = module.split(".")
    if len(parts) == 1:
        return "base"
    if len(parts) == 2 and not (CORE / parts[1]).is_dir():
        return "base" if parts[1] in BASE_MODULES else "entry"
    return parts[1]


def _resolve(name: str, modules: set[str]) -> str:
    """``core.slices`` + ``pipeline`` imported by name: the module when there is one, else the package."""
    return name if name in modules else name.rsplit(".", 1)[0]


def import_edges() -> dict[str, set[str]]:
    """Each ``core`` module -> the ``core`` modules it imports, read from its source."""
    paths = sorted(CORE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    edges: dict[str, set[str]] = defaultdict(set)
    for path in paths:
        me = module_name(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [_resolve(f"{node.module}.{a.name}", modules) for a in node.names]
            else:
                continue
            edges[me].update(t for t in targets if t == "core" or t.startswith("core."))
    return edges


def upward_edges(edges: dict[str, set[str]]) -> list[str]:
    """Every import of a layer above the importer's own, as ``a -> b (layer -> layer)``."""
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    return sorted(f"{a} -> {b} ({layer_of(a)} -> {layer_of(b)})"
                  for a, targets in edges.items() for b in targets
                  if rank[layer_of(b)] > rank[layer_of(a)])


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Import circles between modules (strongly connected components of more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(edges):
        if v not in index:
            visit(v)
    return found


def test_every_core_module_is_in_a_known_layer():
    unknown = sorted({m for m in map(module_name, CORE.rglob("*.py")) if layer_of(m) not in LAYERS})
    assert unknown == [], f"modules outside the layers {LAYERS}: {unknown}"


def test_no_package_imports_a_layer_above_its_own():
    bad = upward_edges(import_edges())
    assert bad == [], "imports that go up the layers " + " < ".join(LAYERS) + ":\n" + "\n".join(bad)


def test_no_import_circle():
    assert cycles(import_edges()) == []


def test_nothing_imports_a_command_entry():
    """``core/<name>.py`` command entries (``python -m core.bench``...) are for people, not for code."""
    users = sorted(f"{a} -> {b}" for a, targets in import_edges().items() for b in targets
                   if layer_of(b) == "entry" and a != b)
    assert users == []


def test_the_checker_sees_a_deferred_upward_import_and_a_circle(tmp_path, monkeypatch):
    """The rules above can fail: a deferred import from a lower layer and a two-module circle."""
    edges = {"core.imaging.viz": {"core.slices.pipeline"}, "core.slices.pipeline": {"core.imaging.viz"}}
    assert upward_edges(edges) == ["core.imaging.viz -> core.slices.pipeline (imaging -> slices)"]
    assert cycles(edges) == [["core.imaging.viz", "core.slices.pipeline"]]
    source = "def late():\n    from core.slices import pipeline\n"
    fake_core = tmp_path / "core"
    (fake_core / "imaging").mkdir(parents=True)
    (fake_core / "slices").mkdir()
    (fake_core / "imaging" / "viz.py").write_text(source)
    (fake_core / "slices" / "pipeline.py").write_text("")
    monkeypatch.setitem(globals(), "CORE", fake_core)
    assert upward_edges(import_edges()) == ["core.imaging.viz -> core.slices.pipeline (imaging -> slices)"]


@pytest.mark.parametrize("package", [p for p in LAYERS if p not in ("base", "entry")])
def test_every_layer_is_a_package_with_a_docstring(package):
    init = CORE / package / "__init__.py"
    assert init.is_file()
    assert ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))), f"core/{package}/__init__.py says nothing"
