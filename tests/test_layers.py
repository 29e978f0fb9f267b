"""The house's layering (DESIGN.md section 2 and 9), checked on the source: which layer may import
which, and no import circles between modules. Imports inside functions count (they hide a circle,
they do not break it); imports under `if TYPE_CHECKING:` do not (they never run)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Each layer and the layers it may import (besides itself). Data flows one way, left to right:
# config → warehouse → collectors / analytics → dashboard, reports, service; the CLI wires them all.
ALLOWED: dict[str, set[str]] = {
    "config": set(),
    "warehouse": {"config"},
    "collectors": {"config", "warehouse"},
    "analytics": {"config", "warehouse"},
    "dashboard": {"config", "analytics"},
    "reports": {"config", "analytics"},
    "service": {"config", "warehouse", "collectors", "analytics"},
    "cdmetrics": {
        "config",
        "warehouse",
        "collectors",
        "analytics",
        "dashboard",
        "reports",
        "service",
        "sandbox",
    },
    "sandbox": {"warehouse"},  # the shared vocabulary only
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, module: str) -> set[str]:
    """The modules of ours `path` (module `module`) imports, at any depth except under
    `if TYPE_CHECKING:`."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return {name for name in found if name.split(".")[0] in ALLOWED}


def _sources() -> dict[str, Path]:
    return {
        _module_name(path): path
        for layer in ALLOWED
        for path in sorted((ROOT / layer).rglob("*.py"))
        if "migrations" not in path.parts
    }


SOURCES = _sources()


def _graph() -> dict[str, set[str]]:
    """Module → the modules of ours it imports (a name that is an attribute, not a module, is
    resolved to the module that holds it)."""
    graph: dict[str, set[str]] = {}
    for module, path in SOURCES.items():
        targets = set()
        for name in _imports(path, module):
            while name and name not in SOURCES:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_the_layers_to_its_left(layer):
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in _graph().items()
        if module.split(".")[0] == layer
        for target in targets
        if target.split(".")[0] not in ALLOWED[layer] | {layer}
    )
    assert not wrong, f"{layer}/ may import only {sorted(ALLOWED[layer])}:\n" + "\n".join(wrong)


def test_no_import_circles():
    graph = _graph()
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                circles.append([*path[path.index(target) :], target])
            elif target not in state:
                walk(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module)
    assert not circles, "import circles:\n" + "\n".join(" → ".join(c) for c in circles)


def test_the_checker_sees_hidden_imports_and_skips_type_checking_ones(tmp_path):
    """The check can fail: an import inside a function counts, a relative one is resolved, and
    one under `if TYPE_CHECKING:` does not count."""
    page = tmp_path / "page.py"
    page.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from collectors.run import sync\n"
        "def f():\n    from warehouse.schema import deployment\n"
        "from . import charts\n"
    )
    found = _imports(page, "dashboard.page")
    assert "warehouse.schema.deployment" in found
    assert "dashboard.charts" in found
    assert not any(name.startswith("collectors") for name in found)
