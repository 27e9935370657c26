"""Resources for a deployment, read from environment variables (through dg.EnvVar when set)."""

from __future__ import annotations

import os
from typing import Any

import dagster as dg
from dagster_duckdb_pandas import DuckDBPandasIOManager

from reflection_assets.paths import warehouse_path
from resources.student import StudentModel
from resources.teacher import ENV_API_KEY, ENV_BASE_URL, ENV_MODEL, Teacher
from resources.tracking import MlflowTracking
from resources.warehouse import Warehouse


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
        "teacher": build_teacher(),
    }


def build_teacher() -> Teacher:
    """An OpenAI-compatible server when REFLECTION_TEACHER_BASE_URL is set, else the in-process model.

    The API key stays a `dg.EnvVar`: it is read at run time and never stored in the definitions.
    """
    if os.environ.get(ENV_BASE_URL):
        from resources.teacher_http import OpenAICompatibleTeacher

        return OpenAICompatibleTeacher(
            base_url=dg.EnvVar(ENV_BASE_URL),
            model=dg.EnvVar(ENV_MODEL),
            api_key=dg.EnvVar(ENV_API_KEY) if os.environ.get(ENV_API_KEY) else None,
        )
    from resources.teacher_local import TransformersTeacher

    return TransformersTeacher(model_ref=env_or(ENV_MODEL, "bundled"))
