"""The package's shape: no import cycle between modules, and no layer importing one above it."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import vstream

PACKAGE = Path(vstream.__file__).parent
LAYERS = [("memory", "synth"), "model", "stream", ("eval", "train"), "serve", "cli"]
"""Lowest first: a module may import its own layer and those before it (plus the top-level helpers), never after.
Packages that share a layer (a tuple) are siblings: neither imports the other."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The vstream modules a file imports, anywhere in it (lazy imports inside functions count too); a name taken
    from a package that re-exports it lazily counts as an import of the module that defines it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vstream"):
            exports = getattr(importlib.import_module(node.module), "_EXPORTS", {})
            found.update(exports.get(alias.name, node.module) for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("vstream"))
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}


def layer(module: str) -> int | None:
    parts = module.split(".")
    for index, names in enumerate(LAYERS):
        if len(parts) > 1 and parts[1] in ((names,) if isinstance(names, str) else names):
            return index
    return None


def package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_no_module_imports_a_higher_layer():
    wrong = []
    for module, imported in graph().items():
        for target in imported:
            if layer(module) is not None and layer(target) is not None and layer(target) > layer(module):
                wrong.append(f"{module} imports {target}")
            if layer(module) is not None and layer(module) == layer(target) and package(module) != package(target):
                wrong.append(f"{module} imports its sibling {target}")
            if layer(module) is None and module not in ("vstream", "vstream.__main__") and layer(target) is not None:
                wrong.append(f"{module} (a top-level helper) imports {target}")
    assert not wrong, wrong


def test_there_is_no_import_cycle():
    edges = graph()
    packages = {m for m in edges if (PACKAGE.parent / m.replace(".", "/") / "__init__.py").is_file()}
    edges = {m: targets - packages for m, targets in edges.items() if m not in packages}  # they re-export lazily
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles
