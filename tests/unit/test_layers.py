"""The import direction is the architecture: pipeline -> transforms -> adapters, never back, no cycles;
inside ``transforms/``, stage families -> kit -> the pure folders (core, sql, formats).

Every module's imports are read with ``ast`` (imports inside functions count: they are still a
dependency; only ``if TYPE_CHECKING:`` blocks are skipped), so a new back-import or cycle fails
here rather than in a reviewer's reading.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

ROOTS = ("pipeline", "transforms", "adapters")
#: Folders of pure functions and types: no Beam, no adapter, nothing above them.
PURE = ("transforms.core", "transforms.sql", "transforms.formats")
#: What the stage families share that needs Beam or an adapter; it imports no family.
KIT = "transforms.kit"
#: The stage families: each imports the pure folders, the kit, the adapters and itself.
FAMILIES = tuple(f"transforms.{family}" for family in ("ingest", "validate", "label", "generate", "select", "publish"))
MAX_MODULE_LINES = 900
MAX_BUILD_LINES = 80


def _modules() -> dict[str, Path]:
    found = {}
    for root in ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _within(name: str, packages: tuple[str, ...] | str) -> bool:
    packages = (packages,) if isinstance(packages, str) else packages
    return any(name == package or name.startswith(package + ".") for package in packages)


def _external_imports(path: Path, text: str = "") -> set[str]:
    """Top-level names of every package a module imports (``apache_beam``, ``sqlglot``, ``adapters``)."""
    tree = ast.parse(text or path.read_text(encoding="utf-8"))
    skipped = _type_checking_nodes(tree)
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    return skipped


def _imports(name: str, path: Path, known: dict[str, Path], text: str = "") -> set[tuple[str, str]]:
    """``(module, imported name)`` pairs of one module (its file, or ``text``), resolved to the
    project's modules."""
    tree = ast.parse(text or path.read_text(encoding="utf-8"))
    skipped = _type_checking_nodes(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            candidates = [(alias.name, "") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            candidates = [(f"{base}.{alias.name}", alias.name) for alias in node.names] + [(base, "")]
        else:
            continue
        for candidate, imported in candidates:
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                found.add((candidate, imported))
                break
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[tuple[str, str]]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative enough for ~100)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycle(graph):
    edges = {name: {target for target, _ in imports} for name, imports in graph.items()}
    assert _cycles(edges) == []


def test_adapters_import_nothing_above_them(graph):
    back = [f"{name} imports {target}" for name, imports in sorted(graph.items()) if name.startswith("adapters")
            for target, _ in sorted(imports) if target.split(".")[0] in ("pipeline", "transforms")]
    assert back == []


def test_transforms_import_nothing_from_pipeline(graph):
    back = [f"{name} imports {target}" for name, imports in sorted(graph.items()) if name.startswith("transforms")
            for target, _ in sorted(imports) if target.split(".")[0] == "pipeline"]
    assert back == []


def test_pure_folders_import_neither_beam_nor_adapters_nor_anything_above_them(graph):
    """Rule 4: core, sql and formats are plain Python over plain values (usable, and tested, without a
    pipeline); they import each other (core the least), never Beam, an adapter, the kit or a family."""
    modules = _modules()
    found = [f"{name} imports {package}" for name, path in sorted(modules.items()) if _within(name, PURE)
             for package in sorted(_external_imports(path) & {"apache_beam", "adapters"})]
    found += [f"{name} imports {target}" for name, imports in sorted(graph.items()) if _within(name, PURE)
              for target, _ in sorted(imports) if target.startswith("transforms.") and not _within(target, PURE)]
    found += [f"{name} imports {target}" for name, imports in sorted(graph.items()) if _within(name, "transforms.core")
              for target, _ in sorted(imports) if target.startswith("transforms.") and not _within(
                  target, "transforms.core")]
    assert found == []


def test_a_stage_family_imports_no_other_family(graph):
    """Rule 5: a family imports core, sql, formats, kit, adapters and itself; the kit imports no family.
    What two families need goes down into kit (Beam or adapters) or a pure folder, so each family
    can be read, tested and changed on its own, and the graph (pipeline/) is what joins them."""
    def family(name: str) -> str:
        return next((f for f in FAMILIES if _within(name, f)), "")

    found = [f"{name} imports {target}" for name, imports in sorted(graph.items()) if family(name)
             for target, _ in sorted(imports) if family(target) not in ("", family(name))]
    found += [f"{name} imports {target}" for name, imports in sorted(graph.items()) if _within(name, KIT)
              for target, _ in sorted(imports) if family(target)]
    assert found == []


def test_every_transforms_module_is_in_a_layer():
    """Nothing sits loose in ``transforms/``: each module is in a pure folder, the kit or a family."""
    loose = [name for name in _modules() if name.startswith("transforms.") and not _within(name, (*PURE, KIT, *FAMILIES))]
    assert loose == []


def test_no_private_name_is_imported_across_modules(graph):
    private = [f"{name} imports {target}.{imported}" for name, imports in sorted(graph.items())
               for target, imported in sorted(imports) if imported.startswith("_") and not imported.startswith("__")]
    assert private == []


def test_the_graph_building_function_reads_like_the_diagram():
    tree = ast.parse((REPO / "pipeline" / "graph.py").read_text(encoding="utf-8"))
    build = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "build")
    assert build.end_lineno - build.lineno + 1 <= MAX_BUILD_LINES


def test_no_module_is_over_900_lines():
    long = {str(path.relative_to(REPO)): sum(1 for _ in path.open(encoding="utf-8"))
            for path in _modules().values()}
    assert {name: n for name, n in long.items() if n > MAX_MODULE_LINES} == {}


def test_the_checker_sees_a_back_import_and_a_cycle():
    """The rules above are only as good as the reading of imports: a back-import planted inside a
    function, and a two-module cycle, are found."""
    known = {"adapters.x": Path(), "transforms.a": Path(), "transforms.b": Path(), "pipeline.c": Path()}
    source = "def f():\n    from transforms.a import thing\n"
    assert ("transforms.a", "thing") in _imports("adapters.x", Path("adapters/x.py"), known, text=source)
    assert _cycles({"transforms.a": {"transforms.b"}, "transforms.b": {"transforms.a"}}) == [
        ["transforms.a", "transforms.b"]]
    inside = "import os\nif TYPE_CHECKING:\n    import pandas\ndef f():\n    from apache_beam import coders\n"
    assert _external_imports(Path(), text=inside) == {"os", "apache_beam"}
