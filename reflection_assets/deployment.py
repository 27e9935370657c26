"""Resources for a deployment, read from environment variables (through dg.EnvVar when set)."""

from __future__ import annotations

import os
from typing import Any

import dagster as dg
from dagster_duckdb_pandas import DuckDBPandasIOManager

from reflection_assets.paths import warehouse_path
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
    }
