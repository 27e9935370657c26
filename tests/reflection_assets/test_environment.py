"""One table of environment variables: the code reads no variable it leaves out, it lists none the code
does not read, and `--help` and the docs are rendered from it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from reflection_assets.environment import VARIABLES, environment_help, environment_markdown, variable_names

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("reflection_assets", "resources", "sensors")
PROJECT_VARIABLE = re.compile(r"^REFLECTION_[A-Z0-9_]+$")


def names_in_code() -> dict[str, str]:
    """Every REFLECTION_* name written as a string in the product's code -> the first file that has it."""
    found: dict[str, str] = {}
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                text = node.value if isinstance(node, ast.Constant) else None
                if isinstance(text, str) and PROJECT_VARIABLE.match(text):
                    found.setdefault(text, str(path.relative_to(ROOT)))
    return found


def teacher_tuning() -> set[str]:
    from reflection_assets.defs.deployment import TEACHER_SETTINGS

    return {s.variable for s in TEACHER_SETTINGS}


def test_the_code_reads_no_variable_the_tables_leave_out() -> None:
    declared = variable_names() | teacher_tuning()
    assert {name: path for name, path in names_in_code().items() if name not in declared} == {}


def test_every_listed_variable_is_read_and_declared_once() -> None:
    listed = [v.name for v in VARIABLES]
    assert len(listed) == len(set(listed))
    assert not set(listed) & teacher_tuning()  # the teacher's tuning is its resource's fields, declared there
    project = {name for name in listed if name.startswith("REFLECTION_")}
    assert project - set(names_in_code()) == set()


def test_help_and_docs_show_every_variable() -> None:
    from reflection_assets.cli import build_parser

    shown = build_parser([]).format_help()
    assert environment_help() in shown
    assert all(f"  {name}  " in shown for name in variable_names())
    assert all(f"| `{name}` |" in environment_markdown() for name in variable_names())
