"""DuckDB warehouse resource: one file, short connections (see `reflection_assets.database`)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd

from reflection_assets.database import connect


class Warehouse(dg.ConfigurableResource):
    """The project's DuckDB file: asset tables (through the IO manager) and the caches."""

    database: str

    def connection(self, read_only: bool = False) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        return connect(self.database, read_only=read_only)

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        """Run one read query; returns an empty frame when the file does not exist yet."""
        if not Path(self.database).exists():
            return pd.DataFrame()
        with self.connection() as conn:
            return conn.execute(sql, params or []).df()