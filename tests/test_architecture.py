"""The package's shape: subpackages along the data flow, no import cycle, command lines only in entry modules."""

from __future__ import annotations

import ast
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
#: Modules allowed at the top of ``scripts/`` besides subpackages: the package marker and command-line entry points.
TOP_LEVEL_MODULES = {"__init__.py", "benchmark.py", "simulate.py"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SCRIPTS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in SCRIPTS.rglob("*.py")}


def import_graph() -> dict[str, set[str]]:
    """Edges module -> the ``scripts`` modules it imports (at any depth of the file, lazy imports included).

    ``from scripts.a import b`` points at ``scripts.a.b`` when that is a module, else at ``scripts.a``. A
    package's ``__init__`` that runs implicitly before its submodules is not an edge (as in pydeps / import-linter).
    """
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name.startswith("scripts")}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("scripts"):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    edges.add(sub if sub in modules else node.module)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_in_scripts():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_top_level_holds_subpackages_and_entry_modules_only():
    loose = {p.name for p in SCRIPTS.glob("*.py")} - TOP_LEVEL_MODULES
    assert not loose, f"modules at the top of scripts/ belong in a subpackage (see docs/architecture.md): {loose}"
    apps = {"monailabel_app"}  # a folder MONAI Label loads main.py from, not a package
    packages = [p for p in SCRIPTS.iterdir() if p.is_dir() and p.name not in {"__pycache__", *apps}]
    assert all((p / "__init__.py").is_file() for p in packages)


def test_command_lines_live_only_in_entry_modules():
    """argparse only in ``__main__`` modules and the top-level entry modules: no module mixes a CLI with the rest."""
    clis = {_module_name(p) for p in SCRIPTS.rglob("*.py") if "argparse" in p.read_text() and p.name != "__main__.py"}
    assert clis <= {"scripts.benchmark", "scripts.simulate"}, clis


def test_lower_layers_do_not_import_upper_layers():
    """The data flow's direction: spectra <- io <- transforms <- networks/engine/phasor/qc/simulation <- benchmarks."""
    rank = {
        "spectra": 0,
        "io": 1,
        "transforms": 2,
        "networks": 2,
        "simulation": 2,
        "engine": 3,
        "phasor": 3,
        "qc": 3,
        "cells": 4,
        "benchmarks": 5,
    }
    for module, edges in import_graph().items():
        parts = module.split(".")
        if len(parts) < 3 or parts[1] not in rank:
            continue
        for target in edges:
            t = target.split(".")
            if len(t) > 1 and t[1] in rank:
                assert rank[t[1]] <= rank[parts[1]], f"{module} (layer {parts[1]}) imports {target} (layer {t[1]})"
