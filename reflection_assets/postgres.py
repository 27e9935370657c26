"""The caches and registries on Postgres (the shared deployment), running the statements they run on DuckDB.

`database.connect` hands out a `PostgresConnection` for a `postgresql://` location, so each cache keeps one
set of statements, written in the dialect the two share (`ON CONFLICT`, `unnest(?::VARCHAR[])`, `DOUBLE
PRECISION`, `BYTEA`, `information_schema`) with DuckDB's `?` placeholders, which this connection turns into
psycopg2's `%s`. One connection is one transaction: committed when its block ends, rolled back on an error.
Postgres lets any number of nodes write at once, so nothing waits for a file lock here.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg2")
# Two nodes creating the same table at once collide in Postgres's catalog (a unique violation, not "already
# exists"): schema statements take this transaction-scoped advisory lock first, so they run one at a time.
_SCHEMA_LOCK = 0x7265666C  # "refl"
_SCHEMA_STATEMENT = re.compile(r"^\s*(CREATE|ALTER)\b", re.IGNORECASE)


def is_postgres(location: object) -> bool:
    """Whether a cache location names a Postgres database (`postgresql://user@host:port/db`) rather than a file."""
    return str(location).split("://", 1)[0].lower() in POSTGRES_SCHEMES and "://" in str(location)


def libpq_url(location: str) -> str:
    """`location` as libpq reads it: SQLAlchemy's `+psycopg2` driver suffix dropped (both spellings are accepted,
    since the Dagster instance's URL needs it)."""
    scheme, rest = location.split("://", 1)
    return f"{scheme.split('+', 1)[0]}://{rest}"


def shown_url(location: str) -> str:
    """`location` with any password replaced, for logs and metadata (the password belongs in PGPASSWORD)."""
    parts = urlsplit(location)
    if parts.password is None:
        return location
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def to_pyformat(sql: str) -> str:
    """DuckDB's `?` placeholders as psycopg2's `%s` (a literal `%` doubled); text in quotes is left alone."""
    out, quote = [], ""
    for char in sql:
        if quote:
            if char == quote:
                quote = ""
        elif char in ("'", '"'):
            quote = char
        elif char == "?":
            out.append("%s")
            continue
        if char == "%":
            out.append("%%")
            continue
        out.append(char)
    return "".join(out)


def _adapt(params: Sequence[Any] | None) -> list[Any]:
    """Parameters as psycopg2 sends them: bytes (and lists of bytes) as bytea. Always a list, so that psycopg2
    reads `%%` as `%` in every statement."""
    import psycopg2

    def one(value: Any) -> Any:
        if isinstance(value, bytes | bytearray | memoryview):
            return psycopg2.Binary(bytes(value))
        if isinstance(value, list):
            return [one(v) for v in value]
        return value

    return [one(v) for v in params or []]


class PostgresConnection:
    """The part of a DuckDB connection the caches use (`execute` returning itself, `fetch*`, `df`, `executemany`)."""

    def __init__(self, location: str) -> None:
        import psycopg2

        self._connection = psycopg2.connect(libpq_url(location))
        self._cursor = self._connection.cursor()

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> PostgresConnection:
        if _SCHEMA_STATEMENT.match(sql):
            self._cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_SCHEMA_LOCK])
        self._cursor.execute(to_pyformat(sql), _adapt(params))
        return self

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> PostgresConnection:
        from psycopg2.extras import execute_batch

        execute_batch(self._cursor, to_pyformat(sql), [_adapt(row) for row in rows], page_size=500)
        return self

    @property
    def description(self) -> Any:
        return self._cursor.description

    def fetchone(self) -> tuple | None:
        return _plain(self._cursor.fetchone())

    def fetchall(self) -> list[tuple]:
        return [_plain(row) for row in self._cursor.fetchall()]

    def fetchmany(self, size: int) -> list[tuple]:
        return [_plain(row) for row in self._cursor.fetchmany(size)]

    def df(self):  # noqa: ANN201 (pandas is imported here only)
        import pandas as pd

        columns = [column.name for column in self._cursor.description or []]
        return pd.DataFrame(self.fetchall(), columns=columns)

    def finish(self, ok: bool) -> None:
        """Commit (`ok`) or roll back, then close."""
        try:
            if ok:
                self._connection.commit()
            else:
                self._connection.rollback()
        finally:
            self._connection.close()


def _plain(row: tuple | None) -> tuple | None:
    """bytea comes back as memoryview; the callers (and DuckDB) deal in bytes."""
    if row is None:
        return None
    return tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)


@contextlib.contextmanager
def advisory_lock(location: str, name: str, on_wait: Callable[[], None] = lambda: None, poll_s: float = 2.0):
    """Hold Postgres's session advisory lock for `name` while the block runs: one holder across every node, and a
    node that dies lets go with its connection. Waiting polls (calling `on_wait` each time) rather than blocking,
    so the waiter's log says why it waits."""
    import psycopg2

    connection = psycopg2.connect(libpq_url(location))
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            while True:
                cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [name])
                if cursor.fetchone()[0]:
                    break
                on_wait()
                time.sleep(poll_s)
            try:
                yield
            finally:
                cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [name])
    finally:
        connection.close()
