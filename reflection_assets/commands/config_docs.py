"""The docs' tables generated from the code: the environment variables from `reflection_assets.environment`,
run parameters from the `dg.Config` classes themselves, the teacher's tuning variables from `TEACHER_SETTINGS`.

Every launchpad knob has one owner (its field: type, default, description); a docs page marks where a
table goes (`<!-- generated: NAME -->`) and the docs build renders it there (`scripts/mkdocs_hooks.py`),
so no table is copied by hand.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import dagster as dg

MARKER = re.compile(r"<!-- generated: ([\w-]+) -->")


def config_classes() -> list[tuple[str, type[dg.Config]]]:
    """(asset, Config class) for every asset whose run parameters are a `dg.Config`."""
    from reflection_assets.defs.assets.evaluation import EvalConfig, ReportConfig
    from reflection_assets.defs.assets.ingest import IngestConfig
    from reflection_assets.defs.assets.reflection import ReflectionConfig
    from reflection_assets.defs.assets.selection import ArmConfig, SelectionConfig
    from reflection_assets.defs.assets.training import LoraCheckpointConfig

    return [
        ("raw_instructions", IngestConfig),
        ("instruction_reflections, response_reflections", ReflectionConfig),
        ("selected_dataset", SelectionConfig),
        ("arm_datasets", ArmConfig),
        ("lora_checkpoint", LoraCheckpointConfig),
        ("eval_scores", EvalConfig),
        ("ablation_report", ReportConfig),
    ]


def _shown(value: object) -> str:
    if value is None:
        return "(unset)"
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return f"`{text}`".replace("|", "\\|")


def config_markdown() -> str:
    lines = ["| asset | knob | default | what |", "| --- | --- | --- | --- |"]
    for asset, cls in config_classes():
        for name, field in cls.model_fields.items():
            what = (field.description or "").replace("|", "\\|").replace("\n", " ")
            lines.append(f"| `{asset}` | `{name}` | {_shown(field.default)} | {what} |")
    return "\n".join(lines)


def generated_tables() -> dict[str, Callable[[], str]]:
    """The generated tables by the name a page marks them with."""
    from reflection_assets.defs.deployment import teacher_env_markdown
    from reflection_assets.environment import environment_markdown

    return {
        "environment": environment_markdown,
        "run-parameters": config_markdown,
        "teacher-settings": teacher_env_markdown,
    }


def render_generated(markdown: str, where: str) -> str:
    """`markdown` with every marker replaced by its table; an unknown name is an error naming the page."""
    tables = generated_tables()

    def table(match: re.Match) -> str:
        name = match.group(1)
        if name not in tables:
            raise KeyError(f"{where}: no generated table {name!r} (known: {', '.join(sorted(tables))})")
        return tables[name]()

    return MARKER.sub(table, markdown)
