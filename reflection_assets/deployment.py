"""Resources for a deployment, read from environment variables (through dg.EnvVar when set).

`build_teacher` is the one place that turns the environment into a teacher: the definitions,
the CLI and the tests all go through it, so they agree on what a setting means.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_duckdb_pandas import DuckDBPandasIOManager

from reflection_assets.paths import warehouse_path
from reflection_assets.teacher.backend import TeacherError
from resources.student import StudentModel
from resources.teacher import Teacher
from resources.tracking import MlflowTracking
from resources.warehouse import Warehouse

ENV_BASE_URL = "REFLECTION_TEACHER_BASE_URL"
ENV_MODEL = "REFLECTION_TEACHER_MODEL"
ENV_API_KEY = "REFLECTION_TEACHER_API_KEY"


def env_or(name: str, default: str) -> Any:
    """`dg.EnvVar(name)` when the variable is set (so the UI shows where it came from), else `default`."""
    return dg.EnvVar(name) if os.environ.get(name) else default


def build_resources() -> dict[str, Any]:
    database = env_or("REFLECTION_WAREHOUSE", str(warehouse_path()))
    return {
        # Asset tables: one DuckDB table per tabular asset, named after the asset, in schema `main`.
        "io_manager": DuckDBPandasIOManager(database=database, schema="main"),
        "warehouse": Warehouse(database=database),
        "mlflow": MlflowTracking(tracking_uri=env_or("MLFLOW_TRACKING_URI", "")),
        "student": StudentModel(model=env_or("REFLECTION_STUDENT", "bundled")),
        "teacher": build_teacher(as_env_vars=True),
    }


class TeacherSettings:
    """Reads teacher settings from `env`: plain values, or `dg.EnvVar`s that Dagster resolves at run time.

    With `as_env_vars` (the definitions) a value that is set becomes `dg.EnvVar(name)`, so the UI shows
    where it came from and a secret is read at run time, never stored in the definitions.
    """

    def __init__(self, env: Mapping[str, str], as_env_vars: bool) -> None:
        self.env, self.as_env_vars = env, as_env_vars

    def is_set(self, name: str) -> bool:
        return bool((self.env.get(name) or "").strip())

    def get(self, name: str, default: Any = None) -> Any:
        if not self.is_set(name):
            return default
        return dg.EnvVar(name) if self.as_env_vars else self.env[name].strip()


def build_teacher(env: Mapping[str, str] | None = None, *, as_env_vars: bool = False) -> Teacher:
    """An OpenAI-compatible server when REFLECTION_TEACHER_BASE_URL is set, else the in-process model.

    REFLECTION_TEACHER_MODEL names the served model (required with a base URL) or the local model
    (default: the bundled one); REFLECTION_TEACHER_API_KEY is optional (local servers need none).
    `env` defaults to the process environment. Nothing is loaded or contacted here.
    """
    settings = TeacherSettings(os.environ if env is None else env, as_env_vars)
    if settings.is_set(ENV_BASE_URL):
        from resources.teacher_http import OpenAICompatibleTeacher

        if not settings.is_set(ENV_MODEL):
            raise TeacherError(f"{ENV_BASE_URL} is set, so {ENV_MODEL} must name the served model")
        return OpenAICompatibleTeacher(
            base_url=settings.get(ENV_BASE_URL), model=settings.get(ENV_MODEL), api_key=settings.get(ENV_API_KEY)
        )
    from resources.teacher_local import TransformersTeacher

    return TransformersTeacher(model_ref=settings.get(ENV_MODEL, "bundled"))
