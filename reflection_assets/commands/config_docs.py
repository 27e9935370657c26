"""The README's table of run parameters, rendered from the `dg.Config` classes themselves.

Every launchpad knob has one owner (its field: type, default, description); the README shows this
rendering and a test keeps the two equal, as it does for the teacher's environment variables.
"""

from __future__ import annotations

import dagster as dg


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
