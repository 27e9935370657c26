"""llm_calls: a content-addressed cache of teacher calls in DuckDB.

A connection is opened only for one short read or write batch (`reflection_assets.database`, which
waits out another process's lock). Only successful calls are reused; failed ones are recorded for
inspection and tried again on the next run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from reflection_assets.database import LOCK_WAIT_SECONDS, connect, location, shown_location
from reflection_assets.hashing import stable_json, text_hash
from reflection_assets.teacher.types import CALL_OK, ChatRequest, ChatResult

TABLE = "llm_calls"
DEFAULT_CACHE_PATH = "data/llm_calls.duckdb"

_DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    call_key VARCHAR PRIMARY KEY,
    backend VARCHAR,
    model VARCHAR,
    prompt_version VARCHAR,
    stage VARCHAR,
    request_json VARCHAR,      -- messages, sampling, guide: never credentials
    response_text VARCHAR,
    status VARCHAR,            -- ok | error
    error VARCHAR,
    finish_reason VARCHAR,
    prompt_tokens BIGINT,
    completion_tokens BIGINT,
    latency_s DOUBLE PRECISION,
    requests INTEGER,          -- HTTP requests or generate passes, retries included
    tries INTEGER,             -- runs that attempted this key (failures accumulate)
    created_at TIMESTAMP,
    updated_at TIMESTAMP
)
"""

# A failed call may be replaced by a later success, a success is never overwritten. One statement per group of
# records (a column per array, zipped by unnest in DuckDB and Postgres alike): DuckDB's executemany of an upsert
# costs ~6 ms a row, which capped a stage at a few hundred calls a minute.
_COLUMNS = (
    ("call_key", "VARCHAR"), ("backend", "VARCHAR"), ("model", "VARCHAR"), ("prompt_version", "VARCHAR"),
    ("stage", "VARCHAR"), ("request_json", "VARCHAR"), ("response_text", "VARCHAR"), ("status", "VARCHAR"),
    ("error", "VARCHAR"), ("finish_reason", "VARCHAR"), ("prompt_tokens", "BIGINT"), ("completion_tokens", "BIGINT"),
    ("latency_s", "DOUBLE PRECISION"), ("requests", "INTEGER"),
)  # fmt: skip
_UPSERT = f"""
INSERT INTO {TABLE}
SELECT {", ".join(f"unnest(?::{kind}[])" for _, kind in _COLUMNS)}, 1, now(), now()
ON CONFLICT (call_key) DO UPDATE SET
    response_text = excluded.response_text, status = excluded.status, error = excluded.error,
    finish_reason = excluded.finish_reason, prompt_tokens = excluded.prompt_tokens,
    completion_tokens = excluded.completion_tokens, latency_s = excluded.latency_s,
    requests = excluded.requests, tries = {TABLE}.tries + 1, updated_at = now()
WHERE {TABLE}.status <> '{CALL_OK}'
"""


def request_payload(identity: dict, prompt_version: str, request: ChatRequest) -> dict:
    """Everything that determines a teacher's answer, and nothing secret."""
    return {
        "identity": identity,
        "prompt_version": prompt_version,
        "messages": [list(m) for m in request.messages],
        "sampling": request.sampling.key_dict(),
        "guide": request.guide.key_dict() if request.guide else None,
    }


def call_key(identity: dict, prompt_version: str, request: ChatRequest) -> str:
    """Full sha256 of the canonical request payload."""
    return text_hash(stable_json(request_payload(identity, prompt_version, request)))


@dataclass(frozen=True)
class CallRecord:
    """One row of llm_calls, as written after a call completes."""

    call_key: str
    backend: str
    model: str
    prompt_version: str
    stage: str
    request_json: str
    result: ChatResult

    def values(self) -> tuple:
        r = self.result
        return (
            self.call_key, self.backend, self.model, self.prompt_version, self.stage, self.request_json,
            r.text, r.status, r.error, r.finish_reason, r.prompt_tokens, r.completion_tokens,
            r.latency_s, r.requests,
        )


class CallCache:
    """Short-lived connections to one DuckDB file holding the llm_calls table."""

    def __init__(self, path: str | Path = DEFAULT_CACHE_PATH, lock_timeout_s: float = LOCK_WAIT_SECONDS):
        self.path = location(path)
        self.lock_timeout_s = lock_timeout_s
        self.lock_waits = 0  # how often another writer held the file (for stats and tests)
        self._ready = False

    def __repr__(self) -> str:
        return f"CallCache({shown_location(self.path)!r})"

    def _count_wait(self) -> None:
        self.lock_waits += 1

    def _run(self, work):  # type: ignore[no-untyped-def]
        """Open (waiting while another process holds the lock), do one short batch of work, close."""
        with connect(self.path, timeout_s=self.lock_timeout_s, on_wait=self._count_wait) as con:
            if not self._ready:
                con.execute(_DDL)
            out = work(con)
        self._ready = True
        return out

    def lookup(self, keys: Iterable[str], chunk: int = 5000) -> dict[str, dict]:
        """Successful cached calls among `keys`, as dicts of column -> value."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, dict] = {}
        for part in _chunks(wanted, chunk):

            def read(con: duckdb.DuckDBPyConnection, part: list[str] = part) -> pd.DataFrame:
                return con.execute(
                    f"SELECT * FROM {TABLE} WHERE call_key IN (SELECT unnest(?::VARCHAR[])) AND status = ?",
                    [part, CALL_OK],
                ).df()

            for row in self._run(read).to_dict("records"):
                found[row["call_key"]] = row
        return found

    def write(self, records: list[CallRecord]) -> None:
        """Upsert a group of completed calls in one statement (the newest record of a key repeated in the group)."""
        newest = {r.call_key: r for r in records}  # one row per key: a statement may not touch a row twice
        if newest:
            columns = [list(column) for column in zip(*(r.values() for r in newest.values()))]
            self._run(lambda con: con.execute(_UPSERT, columns))

    def count(self, status: str | None = None) -> int:
        sql, params = f"SELECT count(*) FROM {TABLE}", []
        if status:
            sql, params = sql + " WHERE status = ?", [status]
        return int(self._run(lambda con: con.execute(sql, params).fetchone()[0]))

    def frame(self) -> pd.DataFrame:
        """The whole table (for tests and inspection)."""
        return self._run(lambda con: con.execute(f"SELECT * FROM {TABLE} ORDER BY created_at").df())


GROUP_SIZE = 256  # records per write at most (a DuckDB or Postgres statement of this many rows: ~60 ms)
GROUP_SECONDS = 0.25  # the longest a finished call waits to be written: what a SIGKILL may lose beyond the in flight


class CallWriter:
    """One writer per stage: completed calls are committed in groups, by count and by time, off the callers' path.

    `save` queues a record and returns; a thread of its own writes whatever is queued once `group_size` records
    wait or the oldest has waited `group_seconds`, so a stage answering hundreds of calls a second costs a few
    writes a second, not one per call. A SIGKILL loses the calls in flight and the last open group (at most
    `group_seconds` of answers). `close` (or leaving the `with` block) writes what is left and raises a failed
    write; `save` raises it too, so a stage stops paying for calls it cannot keep. Past `max_pending` records
    `save` waits for the writer: memory stays bounded when the store is slower than the server.
    """

    def __init__(
        self,
        cache: CallCache,
        group_size: int = GROUP_SIZE,
        group_seconds: float = GROUP_SECONDS,
        max_pending: int = 4096,
    ) -> None:
        self.cache, self.group_size, self.group_seconds = cache, group_size, group_seconds
        self.max_pending = max_pending
        self.written = 0  # records saved
        self.writes = 0  # write statements (groups)
        self._pending: list[CallRecord] = []
        self._first_at = 0.0  # when the oldest pending record was queued
        self._writing = 0  # records taken by the writer, not yet committed
        self._closing = False
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="llm-calls-writer", daemon=True)
        self._thread.start()

    def __enter__(self) -> CallWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(raise_error=exc[0] is None)

    def save(self, record: CallRecord) -> None:
        with self._changed:
            self._raise_if_failed()
            while len(self._pending) >= self.max_pending and self._error is None:
                self._changed.wait()
            self._raise_if_failed()
            if not self._pending:
                self._first_at = time.monotonic()
            self._pending.append(record)
            if len(self._pending) in (1, self.group_size):  # the writer starts its clock, or the group is full
                self._changed.notify_all()

    def flush(self) -> None:
        """Wait until everything queued so far is written (or the writer failed)."""
        with self._changed:
            self._first_at = float("-inf")  # the oldest record is due now
            self._changed.notify_all()
            while (self._pending or self._writing) and self._error is None:
                self._changed.wait()
            self._raise_if_failed()

    def close(self, raise_error: bool = True) -> None:
        """Write what is queued and stop the thread; a failed write is raised (unless already unwinding)."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self._thread.join()
        if raise_error:
            self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"could not save teacher calls to {self.cache!r}: {self._error}") from self._error

    def _due(self) -> bool:
        waited = time.monotonic() - self._first_at
        return bool(self._pending) and (
            self._closing or len(self._pending) >= self.group_size or waited >= self.group_seconds
        )

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._due() and not (self._closing and not self._pending):
                    self._changed.wait(timeout=self._wait_s())
                if not self._pending:
                    return  # closing, nothing left
                batch, self._pending = self._pending, []
                self._writing = len(batch)
                self._changed.notify_all()  # savers waiting on max_pending may go on
            try:
                self.cache.write(batch)
            except BaseException as exc:  # kept for the callers: the thread itself has no one to tell
                with self._changed:
                    self._error, self._writing = exc, 0
                    self._pending[:0] = batch  # unsaved: counted as lost by no one, reported by close()
                    self._changed.notify_all()
                return
            with self._changed:
                self.written += len(batch)
                self.writes += 1
                self._writing = 0
                self._changed.notify_all()

    def _wait_s(self) -> float | None:
        if not self._pending:
            return None
        return max(0.0, self.group_seconds - (time.monotonic() - self._first_at))


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
