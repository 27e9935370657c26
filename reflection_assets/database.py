"""DuckDB connections with one lock-wait policy, for every file the project writes; Postgres for a shared store.

DuckDB lets one process write a file at a time, and Dagster's default executor runs steps in
separate processes. So every caller (the warehouse resource, the `llm_calls` and
`student_scores` caches, the dataset-source registry) opens a connection for one short batch,
never across a model call, and waits with bounded, jittered backoff while another process holds
the lock. The lock is taken when the file is opened, so only opening is retried.

A location that is a `postgresql://` URL (the shared deployment's caches and registries) opens a
`reflection_assets.postgres.PostgresConnection` instead, which runs the same statements.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

from reflection_assets.postgres import PostgresConnection, is_postgres, shown_url

LOCK_WAIT_SECONDS = 120.0
# DuckDB: 'Could not set lock on file ... Conflicting lock is held'; Windows: 'being used by another process'.
LOCK_MARKERS = ("lock", "conflicting", "being used by another process")


def is_lock_error(exc: BaseException) -> bool:
    """True when `exc` says another process holds the database file."""
    return isinstance(exc, duckdb.Error) and any(marker in str(exc).lower() for marker in LOCK_MARKERS)


def lock_retrying(timeout_s: float = LOCK_WAIT_SECONDS, on_wait: Callable[[], None] | None = None) -> Retrying:
    """The lock-wait policy: retry lock errors only, jittered exponential backoff, give up after `timeout_s`."""

    def before_sleep(_: RetryCallState) -> None:
        if on_wait is not None:
            on_wait()

    return Retrying(
        retry=retry_if_exception(is_lock_error),
        wait=wait_random_exponential(multiplier=0.05, max=2.0),
        stop=stop_after_delay(timeout_s),
        before_sleep=before_sleep,
        reraise=True,
    )


@contextlib.contextmanager
def connect(
    database: str | Path,
    read_only: bool = False,
    timeout_s: float = LOCK_WAIT_SECONDS,
    on_wait: Callable[[], None] | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open `database` (creating its folder), waiting while another process holds it; closed on exit.

    `on_wait` is called before each wait (callers count lock waits for their statistics). A Postgres URL
    opens one transaction on that database instead, committed when the block ends without an error.
    """
    if is_postgres(database):
        connection = PostgresConnection(str(database))
        ok = False
        try:
            yield connection  # type: ignore[misc]  (the part of DuckDB's connection the stores use)
            ok = True
        finally:
            connection.finish(ok)
        return
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    connection = lock_retrying(timeout_s, on_wait)(duckdb.connect, str(database), read_only=read_only)
    try:
        yield connection
    finally:
        connection.close()


def location(database: str | Path) -> str | Path:
    """A file's path as a Path; a Postgres URL kept as text (a Path would fold its `//`)."""
    return str(database) if is_postgres(database) else Path(database)


def shown_location(database: str | Path) -> str:
    """`database` for logs and metadata: a Postgres URL without its password."""
    return shown_url(str(database)) if is_postgres(database) else str(database)


def exists(database: str | Path) -> bool:
    """Whether there is anything to read at `database` yet (a Postgres database is always there)."""
    return is_postgres(database) or Path(database).exists()


def table_exists(connection: duckdb.DuckDBPyConnection, table: str) -> bool:
    return bool(
        connection.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]).fetchone()[0]
    )


class TableFile:
    """Short-lived connections to one table of a DuckDB file (or a Postgres database), the table created on first
    use.

    The caches (`student_scores`, `eval_outputs`) subclass it with their table name, CREATE statement
    and a `key` primary key column.
    """

    table: str = ""
    create_sql: str = ""

    def __init__(self, db_path: str | Path) -> None:
        self.db_path = location(db_path)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with connect(self.db_path) as connection:
            connection.execute(self.create_sql)
            yield connection

    def stored(self, keys: Sequence[str], column: str) -> dict[str, Any]:
        """{key: column} for the `keys` already stored (missing keys are absent), in one query."""
        if not keys:
            return {}
        with self._connection() as connection:
            rows = connection.execute(
                f"SELECT key, {column} FROM {self.table} WHERE key IN (SELECT unnest(?::VARCHAR[]))", [list(keys)]
            ).fetchall()
        return dict(rows)
