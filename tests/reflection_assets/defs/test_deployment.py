"""The one teacher selector: the definitions keep settings as dg.EnvVar, and both paths agree on errors."""

from __future__ import annotations

import dagster as dg
import pytest

from reflection_assets.defs.deployment import (
    ENV_API_KEY,
    ENV_BASE_URL,
    ENV_EXECUTOR,
    ENV_MODEL,
    build_executor,
    build_teacher,
)
from reflection_assets.teacher.backend import TeacherError
from resources.teacher_http import OpenAICompatibleTeacher
from resources.teacher_local import TransformersTeacher


def test_definitions_read_teacher_settings_at_run_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_BASE_URL, "http://127.0.0.1:9/v1")
    monkeypatch.setenv(ENV_MODEL, "served")
    monkeypatch.delenv(ENV_API_KEY, raising=False)
    teacher = build_teacher(as_env_vars=True)
    assert isinstance(teacher, OpenAICompatibleTeacher)
    assert teacher.base_url == dg.EnvVar(ENV_BASE_URL) and teacher.model == dg.EnvVar(ENV_MODEL)
    assert teacher.api_key is None


def test_a_base_url_without_a_model_is_a_clear_error_on_both_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_BASE_URL, "http://127.0.0.1:9/v1")
    monkeypatch.delenv(ENV_MODEL, raising=False)
    for as_env_vars in (False, True):
        with pytest.raises(TeacherError, match=ENV_MODEL):
            build_teacher(as_env_vars=as_env_vars)


def test_no_base_url_means_the_local_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_BASE_URL, raising=False)
    monkeypatch.setenv(ENV_MODEL, "/models/mine")
    assert build_teacher() == TransformersTeacher(model_ref="/models/mine")
    assert build_teacher({}) == TransformersTeacher(model_ref="bundled")


def test_runs_execute_in_step_processes_unless_the_deployment_says_in_process() -> None:
    default = build_executor({})
    assert default.name == "multiprocess" and build_executor({ENV_EXECUTOR: "multiprocess"}).name == "multiprocess"
    # Step processes fork from a server that imported the code location once (not a fresh interpreter each).
    start = default.apply_config_mapping({}).value["config"]["start_method"]
    assert start == {"forkserver": {"preload_modules": ["reflection_assets.defs.definitions"]}}
    assert build_executor({ENV_EXECUTOR: "in_process"}) is dg.in_process_executor
    with pytest.raises(ValueError, match=ENV_EXECUTOR):
        build_executor({ENV_EXECUTOR: "threads"})


def test_the_asset_tables_store_is_chosen_by_the_environment_and_a_bad_choice_says_why() -> None:
    from reflection_assets.defs.deployment import build_io_manager
    from resources.object_tables_io import ObjectTablesIOManager
    from resources.warehouse_io import WarehouseIOManager

    assert isinstance(build_io_manager("w.duckdb", {}), WarehouseIOManager)  # the local default
    assert isinstance(build_io_manager("w.duckdb", {"REFLECTION_STORAGE": "local"}), WarehouseIOManager)
    shared = {"REFLECTION_STORAGE": "shared", "REFLECTION_TABLES_URI": "s3://bucket/tables",
              "REFLECTION_STORE_URL": "postgresql://reflection@db:5432/reflection",
              "REFLECTION_FILES_URI": "s3://bucket/files"}
    assert isinstance(build_io_manager("w.duckdb", shared), ObjectTablesIOManager)
    with pytest.raises(ValueError, match="REFLECTION_STORAGE='cloud': expected one of local, shared"):
        build_io_manager("w.duckdb", {"REFLECTION_STORAGE": "cloud"})
    with pytest.raises(ValueError, match="REFLECTION_STORAGE=shared needs REFLECTION_TABLES_URI"):
        build_io_manager("w.duckdb", {"REFLECTION_STORAGE": "shared"})
    with pytest.raises(ValueError, match="REFLECTION_STORAGE=shared needs REFLECTION_STORE_URL"):
        build_io_manager("w.duckdb", {**shared, "REFLECTION_STORE_URL": "/var/lib/reflection.duckdb"})
    with pytest.raises(ValueError, match="REFLECTION_STORAGE=shared needs REFLECTION_FILES_URI"):
        build_io_manager("w.duckdb", {**shared, "REFLECTION_FILES_URI": ""})
