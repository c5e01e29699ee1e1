"""Imports point one way (errors -> spec -> ir -> families -> document -> nn/data -> model ->
pruning/training -> workflows/interop/report -> cli), and there is no import cycle."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
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


def _module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST):
    """Every node that can run: what sits under ``if TYPE_CHECKING:`` is for type checkers only."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def _imports(path: Path, top_level_only: bool, package_dir: Path = PACKAGE) -> set[str]:
    """Absolute names of the package's modules a file imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module = _module_name(path, package_dir)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    nodes = tree.body if top_level_only else list(_runtime_nodes(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith(package_dir.name):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith(package_dir.name))
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


def find_cycle(package_dir: Path) -> list[str] | None:
    """An import cycle among the package's modules (imports inside functions count), or None."""
    files = sorted(package_dir.rglob("*.py"))
    modules = {_module_name(p, package_dir): p for p in files}
    graph = {name: {m for m in _imports(path, False, package_dir) if m in modules and m != name}
             for name, path in modules.items()}
    # a package's __init__ re-exporting its own submodules is not a cycle of concern
    graph = {name: {m for m in deps if not (name == m.rsplit(".", 1)[0])} for name, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(name: str, stack: list[str]) -> list[str] | None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep] if dep in stack else [name, dep]
            if dep not in state and (cycle := visit(dep, stack + [dep])):
                return cycle
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state and (cycle := visit(name, [name])):
            return cycle
    return None


def test_no_import_cycle():
    cycle = find_cycle(PACKAGE)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_a_cycle_through_a_function_level_import_is_found(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text("def f():\n    from .high import g\n    return g\n")
    (package / "high.py").write_text("from .low import f\n\ndef g():\n    return f\n")
    assert find_cycle(package) in (["pkg.low", "pkg.high", "pkg.low"], ["pkg.high", "pkg.low", "pkg.high"])
    (package / "low.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .high import g\n")
    assert find_cycle(package) is None  # type checkers' imports never run


def test_the_ir_imports_without_yaml_jsonschema_or_torch():
    """``import slimspec.ir`` (the package facade included) needs none of the heavier dependencies."""
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'ruamel', 'jsonschema', 'yaml'):\n"
            "            raise ImportError('blocked ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import slimspec.ir\n"
            "from slimspec.ir import IRBuilder\n"
            "b = IRBuilder('x', 'x', (3, 8, 8), 2, {})\n"
            "b.classifier(b.gap('gap', 'input'))\n"
            "print(slimspec.ir.count_params(b.finish()))\n")
    env = dict(os.environ, PYTHONPATH=str(PACKAGE.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(3 * 2 + 2)
