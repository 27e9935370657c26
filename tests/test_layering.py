"""Imports point one way: parse every module (no import executed) and check the graph.

- no import cycle among the project's modules (lazy imports inside functions count: they are
  how a base class ends up importing its own subclasses);
- pure modules under `reflection_assets/` import neither `resources` nor Dagster nor the
  Dagster-facing modules of `reflection_assets` (assets, commands, definitions, ...).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("reflection_assets", "resources", "sensors")
# Dagster-facing modules of reflection_assets: everything else there is pure.
DAGSTER_FACING = (
    "reflection_assets.assets",
    "reflection_assets.commands",
    "reflection_assets.cli",
    "reflection_assets.definitions",
    "reflection_assets.deployment",
    "reflection_assets.automation",
    "reflection_assets.code_versions",
    "reflection_assets.jobs",
    "reflection_assets.partitions",
)
FORBIDDEN_IN_PURE = ("resources", "dagster", "dagster_duckdb", "dagster_duckdb_pandas", "sensors", *DAGSTER_FACING)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def imported_names(path: Path, name: str) -> set[str]:
    """Every module `path` imports, anywhere in the file, as absolute dotted names."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return out


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {
        name: {m for m in imported_names(path, name) if m in modules and m != name} for name, path in modules.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def is_pure(name: str) -> bool:
    return name.startswith("reflection_assets") and not any(
        name == facing or name.startswith(facing + ".") for facing in DAGSTER_FACING
    )


def test_the_project_has_modules_to_check() -> None:
    graph = import_graph()
    assert "reflection_assets.teacher.runner" in graph and "resources.teacher" in graph and "sensors.inbox" in graph
    assert "reflection_assets.teacher.backend" in graph["reflection_assets.teacher.runner"]


def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_pure_modules_import_no_dagster_and_no_resources() -> None:
    modules = project_modules()
    offenders = {
        name: sorted(
            m for m in imported_names(path, name) if any(m == f or m.startswith(f + ".") for f in FORBIDDEN_IN_PURE)
        )
        for name, path in modules.items()
        if is_pure(name)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize(
    "graph, expected",
    [
        ({"a": {"b"}, "b": {"a"}, "c": set()}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
    ],
)
def test_cycle_finder(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert cycles(graph) == expected
