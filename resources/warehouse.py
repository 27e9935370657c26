"""DuckDB warehouse: one file, short connections.

DuckDB lets one process write a file at a time, and Dagster's default executor runs steps in
separate processes. So every caller opens a connection for one short batch (never across a
model call) and retries with backoff while another process holds the lock.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd

LOCK_MARKERS = ("lock", "Conflicting", "being used by another process")


def _is_lock_error(error: Exception) -> bool:
    return isinstance(error, (duckdb.IOException, duckdb.ConnectionException)) and any(
        marker in str(error) for marker in LOCK_MARKERS
    )


@contextlib.contextmanager
def connect(database: str | Path, read_only: bool = False, timeout_s: float = 120.0) -> Iterator[Any]:
    """Open `database`, waiting (bounded, with jittered backoff) while another process holds it."""
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            conn = duckdb.connect(str(database), read_only=read_only)
            break
        except Exception as error:  # noqa: BLE001 - only lock errors are retried, the rest re-raised
            if not _is_lock_error(error) or time.monotonic() > deadline:
                raise
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)
    try:
        yield conn
    finally:
        conn.close()


def table_exists(conn: Any, table: str) -> bool:
    return bool(
        conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
        ).fetchone()[0]
    )


class Warehouse(dg.ConfigurableResource):
    """The project's DuckDB file: asset tables (through the IO manager) and the caches."""

    database: str

    def connection(self, read_only: bool = False):
        return connect(self.database, read_only=read_only)

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        """Run one read query; returns an empty frame when the file does not exist yet."""
        if not Path(self.database).exists():
            return pd.DataFrame()
        with self.connection() as conn:
            return conn.execute(sql, params or []).df()

    def has_table(self, table: str) -> bool:
        if not Path(self.database).exists():
            return False
        with self.connection() as conn:
            return table_exists(conn, table)
