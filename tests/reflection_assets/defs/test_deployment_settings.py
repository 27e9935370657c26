"""Teacher settings from environment variables: the table, the docs, resolution in a run, the UI."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from dagster._core.remote_representation.external_data import RepositorySnap  # what the UI reads

from reflection_assets.defs.assets.reflection import ReflectionConfig
from reflection_assets.defs.deployment import TEACHER_SETTINGS, build_teacher, teacher_env_markdown
from reflection_assets.teacher.backend import TeacherError
from resources.teacher import Teacher
from resources.teacher_http import OpenAICompatibleTeacher
from resources.teacher_local import TransformersTeacher

CONFIGURATION_PAGE = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"
SERVER = {"REFLECTION_TEACHER_BASE_URL": "http://127.0.0.1:9/v1", "REFLECTION_TEACHER_MODEL": "served"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ["REFLECTION_TEACHER_BASE_URL", "REFLECTION_TEACHER_MODEL", "REFLECTION_TEACHER_API_KEY"] + [
        s.variable for s in TEACHER_SETTINGS
    ]:
        monkeypatch.delenv(name, raising=False)


def set_env(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def resolved(teacher: Teacher) -> Teacher:
    """The teacher as a run sees it (environment variables resolved by Dagster)."""

    @dg.asset
    def probe(teacher: Teacher) -> dict:
        return teacher.model_dump()

    seen = dg.materialize([probe], resources={"teacher": teacher}).output_for_node("probe")
    return type(teacher)(**seen)


def test_the_docs_table_is_the_settings_table() -> None:
    from reflection_assets.commands.config_docs import render_generated

    assert teacher_env_markdown() in render_generated(CONFIGURATION_PAGE.read_text(), "configuration.md")


def test_every_setting_names_a_field_of_its_backend_once() -> None:
    variables = [s.variable for s in TEACHER_SETTINGS]
    assert len(set(variables)) == len(variables) and all(v.startswith("REFLECTION_TEACHER_") for v in variables)
    for setting in TEACHER_SETTINGS:
        assert setting.field in setting.backend.model_fields and setting.what
    fields = {s.field for s in TEACHER_SETTINGS}
    assert {"guided", "max_concurrency", "timeout_s", "connect_timeout_s", "max_attempts", "backoff_initial_s",
            "backoff_max_s", "max_retry_after_s", "temperature", "top_p", "seed"} <= fields


def test_server_settings_reach_the_run_and_the_ui(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, {**SERVER, "REFLECTION_TEACHER_GUIDED": "true", "REFLECTION_TEACHER_CONCURRENCY": "3",
                          "REFLECTION_TEACHER_TIMEOUT_S": "7.5", "REFLECTION_TEACHER_MAX_ATTEMPTS": "2",
                          "REFLECTION_TEACHER_BACKOFF_INITIAL_S": "0.25", "REFLECTION_TEACHER_MAX_RETRY_AFTER_S": "9",
                          "REFLECTION_TEACHER_TEMPERATURE": "0.7", "REFLECTION_TEACHER_SEED": "11"})
    teacher = build_teacher(as_env_vars=True)  # as the definitions build it
    assert isinstance(teacher, OpenAICompatibleTeacher)
    run = resolved(teacher)
    assert isinstance(run, OpenAICompatibleTeacher)
    assert (run.base_url, run.model, run.guided, run.max_concurrency, run.max_attempts, run.seed) == (
        "http://127.0.0.1:9/v1", "served", True, 3, 2, 11)
    assert (run.timeout_s, run.backoff_initial_s, run.max_retry_after_s, run.temperature) == (7.5, 0.25, 9.0, 0.7)
    assert run.backoff_max_s == OpenAICompatibleTeacher.model_fields["backoff_max_s"].default  # unset: the default

    settings = ReflectionConfig().settings(run)  # a run that says nothing takes the deployment's choices
    assert (settings.guided, settings.temperature, settings.seed) == (True, 0.7, 11)
    own = ReflectionConfig(guided=False, temperature=0.0).settings(run)  # the launchpad overrides them
    assert (own.guided, own.temperature) == (False, 0.0)

    snap = RepositorySnap.from_def(dg.Definitions(resources={"teacher": teacher}).get_repository_def())
    [resource] = [r for r in snap.resources if r.name == "teacher"]
    shown = {name: getattr(value, "name", value) for name, value in resource.configured_values.items()}
    assert shown["guided"] == "REFLECTION_TEACHER_GUIDED"
    assert shown["max_concurrency"] == "REFLECTION_TEACHER_CONCURRENCY"
    assert shown["base_url"] == "REFLECTION_TEACHER_BASE_URL" and shown["timeout_s"] == "7.5"


def test_unguided_over_http_by_default_and_guided_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, SERVER)
    server = resolved(build_teacher())
    assert not server.guided_by_default and not ReflectionConfig().settings(server).guided
    monkeypatch.setenv("REFLECTION_TEACHER_GUIDED", "0")
    assert not resolved(build_teacher()).guided_by_default

    for name in SERVER:
        monkeypatch.delenv(name)
    set_env(monkeypatch, {"REFLECTION_TEACHER_BATCH_SIZE": "4", "REFLECTION_TEACHER_DTYPE": "bfloat16",
                          "REFLECTION_TEACHER_CONCURRENCY": "3"})  # an HTTP setting does not reach the local model
    local = resolved(build_teacher())
    assert isinstance(local, TransformersTeacher) and local.guided_by_default
    assert (local.model_ref, local.batch_size, local.dtype) == ("bundled", 4, "bfloat16")


@pytest.mark.parametrize("name, value", [("REFLECTION_TEACHER_TIMEOUT_S", "soon"),
                                         ("REFLECTION_TEACHER_CONCURRENCY", "4.5"),
                                         ("REFLECTION_TEACHER_GUIDED", "yes please")])
def test_a_malformed_value_names_its_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    set_env(monkeypatch, {**SERVER, name: value})
    with pytest.raises(TeacherError, match=name):
        build_teacher()
