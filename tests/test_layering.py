"""Imports point one way (errors -> spec -> ir -> families -> document -> nn/data -> model ->
pruning/training -> workflows/interop/report -> cli), and there is no import cycle."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "slimspec"

# Lower number = lower layer. A module may import its own layer or any lower one.
LAYERS: dict[str, int] = {
    "errors": 0, "utils": 0,
    "specio": 1,
    "ir": 2,
    "families": 3,
    "document": 4,
    "nn": 5, "data": 5, "weights": 5,
    "model": 6,
    "latency": 7, "interop": 7,  # importers build specs + weights; below pruning so prune(module) can use them
    "pruning": 8, "training": 8,
    "workflows": 9, "report": 9,
    "cli": 10,
    "__init__": 11, "__main__": 11,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """Absolute names of the slimspec modules a file imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("slimspec"):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("slimspec"))
    return found


def _files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def _layer(module: str) -> int | None:
    """The layer of the longest listed prefix (a sub-package may sit in another layer than its parent)."""
    parts = module.split(".")[1:] or ["__init__"]
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in LAYERS:
            return LAYERS[".".join(parts[:end])]
    return None


def test_every_top_level_part_has_a_layer():
    tops = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in _files()}
    assert tops <= set(LAYERS), f"give these a layer in this test: {sorted(tops - set(LAYERS))}"


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_higher_layer(path: Path):
    own = _layer(_module_name(path)) if path.name != "__init__.py" or path.parent != PACKAGE else LAYERS["__init__"]
    upward = sorted(m for m in _imports(path, top_level_only=False)
                    if m != "slimspec" and (_layer(m) or 0) > (own or 0))
    assert not upward, f"{path.relative_to(PACKAGE)} (layer {own}) imports higher layers: {upward}"


def test_no_import_cycle_at_import_time():
    modules = {_module_name(p): p for p in _files()}
    graph = {name: {m for m in _imports(path, top_level_only=True) if m in modules and m != name}
             for name, path in modules.items()}
    # a package's __init__ re-exporting its own submodules is not a cycle of concern
    graph = {name: {m for m in deps if not (name == m.rsplit(".", 1)[0])} for name, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(name: str, stack: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep] if dep in stack else [name, dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, stack + [dep])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
