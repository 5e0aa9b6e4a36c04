"""The layering rule of the README's layout section, checked on every import of the packages
(module level and inside functions alike):

    pipelines  <-  cluster's foundation (settings, errors, naming)
               <-  cluster's clients, stores, models, security
               <-  cluster's services
               <-  actors, serve (serve may call actors' launcher; actors never import serve)
               <-  cluster's stack and CLI, the SDK facade (they start or bundle everything)

A module imports only from its own layer or below; the project's modules form no import cycle;
and no project import hides inside a function (a lazy import is how cycles get dodged).
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipelines", "cluster", "actors", "serve", "event_streaming_bus")
LAYERS: tuple[tuple[str, ...], ...] = (
    ("pipelines",),
    ("cluster.settings", "cluster.errors", "cluster.naming", "cluster.coalescing", "cluster"),
    ("cluster.kafka", "cluster.stores", "cluster.models", "cluster.security", "cluster.ray_client"),
    ("cluster.services",),
    ("actors", "serve"),
    ("cluster.stack", "cluster.cli", "event_streaming_bus"),
)
FORBIDDEN = {("actors", "serve")}  # same layer, one direction only


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(p): p
        for package in PACKAGES
        for p in (ROOT / package).rglob("*.py")
        if "__pycache__" not in p.parts
    }


MODULES = _modules()


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported project module, imported at module level) for every import in the file."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from cluster import naming` imports the module cluster.naming
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                for a in node.names
            ]
        for name in names:
            if name.split(".")[0] in PACKAGES:
                found.append((name, id(node) in top or _in_type_checking(tree, node)))
    return found


def _in_type_checking(tree: ast.Module, node: ast.AST) -> bool:
    for stmt in tree.body:
        guarded = isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test)
        if guarded and any(child is node for child in ast.walk(stmt)):
            return True
    return False


def layer(module: str) -> int:
    """The layer of a module: its longest matching prefix wins."""
    best, depth = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > depth:
                best, depth = index, len(prefix)
    assert best >= 0, f"{module} is in no layer: add it to LAYERS"
    return best


def _top(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_only(module: str) -> None:
    for imported, _ in _imports(MODULES[module]):
        assert layer(imported) <= layer(module), f"{module} (layer {layer(module)}) imports " + (
            f"{imported} (layer {layer(imported)}): move the code down, or inject it"
        )
        assert (_top(module), _top(imported)) not in FORBIDDEN, f"{module} imports {imported}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_lazy_project_imports(module: str) -> None:
    lazy = [name for name, at_top in _imports(MODULES[module]) if not at_top]
    assert not lazy, f"{module} imports {lazy} inside a function: import at the top"


def test_no_import_cycles() -> None:
    graph = {m: {i for i, _ in _imports(p) if i in MODULES and i != m} for m, p in MODULES.items()}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = [*path[path.index(module) :], module]
            # a package importing its own submodules (its public face) is not a cycle
            if not all(
                b.startswith(a + ".") or a.startswith(b + ".") for a, b in itertools.pairwise(cycle)
            ):
                pytest.fail("import cycle: " + " -> ".join(cycle))
            return
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


def test_the_rule_catches_an_upward_import() -> None:
    assert layer("pipelines.spec") < layer("cluster.errors") < layer("cluster.services.bus")
    assert layer("cluster.services.subscriptions") < layer("actors.launcher")
    assert layer("serve.app") < layer("cluster.stack.local_stack")
