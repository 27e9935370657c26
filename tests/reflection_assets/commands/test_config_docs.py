"""Every run parameter the launchpad shows is explained, and the docs' table covers every asset that has one."""

# No `from __future__ import annotations`: Dagster reads a config class from a real annotation, not a string.
import dagster as dg
import pytest
from pydantic import Field


@pytest.fixture(scope="module")
def configured_assets() -> list[tuple[set[str], dict]]:
    """(asset keys, {knob: Dagster's config field}) for every op of the definitions that takes run config."""
    from reflection_assets.defs.definitions import defs

    found = []
    for assets_def in defs.resolve_asset_graph().assets_defs:
        schema = assets_def.op.config_schema if assets_def.is_executable else None
        config_type = schema.config_type if schema is not None else None
        if config_type is not None and getattr(config_type, "fields", None):
            found.append(({key.to_user_string() for key in assets_def.keys}, dict(config_type.fields)))
    return found


def undescribed(configured: list[tuple[set[str], dict]]) -> list[str]:
    return sorted(
        f"{'/'.join(sorted(keys))}.{knob}"
        for keys, knobs in configured
        for knob, field in knobs.items()
        if not (field.description or "").strip()
    )


def test_every_run_parameter_has_a_description(configured_assets):
    names = set().union(*(keys for keys, _ in configured_assets))
    assert {"raw_instructions", "selected_dataset", "lora_checkpoint", "eval_scores", "ablation_report"} <= names
    assert not undescribed(configured_assets), "run parameters without a description"


class HalfExplained(dg.Config):
    explained: int = Field(default=1, description="why")
    bare: int = 2


@dg.asset
def half_explained(config: HalfExplained) -> None:
    return None


def test_a_knob_without_a_description_is_caught():
    fields = dict(half_explained.op.config_schema.config_type.fields)
    assert undescribed([({"half_explained"}, fields)]) == ["half_explained.bare"]


def test_the_docs_table_covers_every_asset_with_run_parameters(configured_assets):
    from reflection_assets.commands.config_docs import config_classes

    listed = {name.strip() for assets, _ in config_classes() for name in assets.split(",")}
    assert all(keys & listed for keys, _ in configured_assets)  # a multi-asset is listed under one of its keys
    assert listed <= set().union(*(keys for keys, _ in configured_assets))


def test_a_knob_that_mirrors_a_setting_is_explained_by_the_setting():
    from reflection_assets.defs.assets.evaluation import EvalConfig, ReportConfig
    from reflection_assets.defs.assets.ingest import IngestConfig
    from reflection_assets.defs.assets.reflection import ReflectionConfig
    from reflection_assets.defs.assets.selection import SelectionConfig
    from reflection_assets.defs.assets.training import LoraCheckpointConfig
    from reflection_assets.documented import help_text
    from reflection_assets.evaluation.report import ReportSettings
    from reflection_assets.evaluation.runner import EvalSettings
    from reflection_assets.ingest.registry import DatasetSource
    from reflection_assets.selection import SelectionSettings
    from reflection_assets.teacher.settings import ReflectionSettings
    from reflection_assets.training.settings import LoraSettings

    pairs = [(IngestConfig, DatasetSource), (ReflectionConfig, ReflectionSettings),
             (SelectionConfig, SelectionSettings), (LoraCheckpointConfig, LoraSettings), (EvalConfig, EvalSettings),
             (ReportConfig, ReportSettings)]  # fmt: skip
    for config, settings in pairs:
        shared = set(config.model_fields) & set(settings.__dataclass_fields__)
        assert shared, config.__name__
        for name in shared:
            if name == "max_new_tokens" and config is EvalConfig:
                continue  # a partial {suite: tokens} over the defaults, not the settings' full mapping
            assert config.model_fields[name].description.startswith(help_text(settings, name)), f"{config}.{name}"
