"""Imports point one way: parse every module (no import executed) and check the graph.

- no import cycle among the project's modules (lazy imports inside functions count: they are
  how a base class ends up importing its own subclasses);
- the Dagster-facing code is `reflection_assets.defs` (assets, jobs, definitions, ...), the CLI
  (`commands`, `cli`), `resources` and `sensors`; every other module of `reflection_assets` is pure
  and imports none of them, nor Dagster;
- the pure packages sit in layers: a package imports only the foundation (the modules at the top of
  `reflection_assets`) and packages of lower layers, never one beside or above it, and the foundation
  imports no package. A new package must be given its layer here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("reflection_assets", "resources", "sensors")
# The Dagster-facing parts of reflection_assets: everything else there is pure.
DAGSTER_FACING = ("reflection_assets.defs", "reflection_assets.commands", "reflection_assets.cli")
# The pure packages, bottom layer first (see the module docstring for the rule).
PURE_LAYERS = (
    ("ingest", "scoring"),  # rows in; the student's losses
    ("training",),  # LoRA on the student, its data rendered with scoring's templates
    ("generation",),  # batched decoding over a loaded model: the engine the teacher and evaluation share
    ("teacher",),  # the teacher's rewrites: prompts, plans, cache, runner, and the in-process teacher on the engine
    ("evaluation",),  # suites, the judge and verdicts over generation, likelihoods and checkpoints
    ("selection", "served"),  # the selection rules and decontamination; the vLLM clients of everything below
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


def pure_package(name: str) -> str | None:
    """The pure package `name` belongs to ("scoring" for reflection_assets.scoring.engine); None for the
    foundation's modules and for what is not pure."""
    parts = name.split(".")
    if not is_pure(name) or len(parts) < 2:
        return None
    return parts[1] if (ROOT / "reflection_assets" / parts[1] / "__init__.py").is_file() else None


def layer_of(package: str) -> int:
    return next(i for i, layer in enumerate(PURE_LAYERS) if package in layer)


def test_every_pure_package_has_a_layer() -> None:
    packages = {p.name for p in (ROOT / "reflection_assets").iterdir() if (p / "__init__.py").is_file()}
    pure = {p for p in packages if is_pure(f"reflection_assets.{p}")}
    assert pure == {p for layer in PURE_LAYERS for p in layer}


def test_pure_packages_import_only_lower_layers() -> None:
    """No import runs back up: each pure package imports the foundation and packages of lower layers only."""
    back_up = []
    for name, targets in import_graph().items():
        if not is_pure(name):
            continue
        source = pure_package(name)
        for target in targets:
            wanted = pure_package(target)
            if wanted is None or wanted == source:
                continue
            if source is None or layer_of(wanted) >= layer_of(source):
                back_up.append(f"{name} -> {target}")
    assert back_up == []


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
