"""llm_calls: a content-addressed cache of teacher calls in DuckDB.

A connection is opened only for one short read or write batch (`reflection_assets.database`, which
waits out another process's lock). Only successful calls are reused; failed ones are recorded for
inspection and tried again on the next run.
"""

from __future__ import annotations

import threading
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

# A failed call may be replaced by a later success, a success is never overwritten.
_UPSERT = f"""
INSERT INTO {TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, now(), now())
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
        """Upsert one small batch of completed calls."""
        if records:
            self._run(lambda con: con.executemany(_UPSERT, [r.values() for r in records]))

    def count(self, status: str | None = None) -> int:
        sql, params = f"SELECT count(*) FROM {TABLE}", []
        if status:
            sql, params = sql + " WHERE status = ?", [status]
        return int(self._run(lambda con: con.execute(sql, params).fetchone()[0]))

    def frame(self) -> pd.DataFrame:
        """The whole table (for tests and inspection)."""
        return self._run(lambda con: con.execute(f"SELECT * FROM {TABLE} ORDER BY created_at").df())


class CallWriter:
    """Saves each completed call before its caller moves on, so a SIGKILL loses only calls in flight.

    Calls that finish together share one write (group commit): whoever holds the write lock writes
    everything pending, so N threads finishing at once cost one DuckDB open, not N. `save` returns
    only once the record is on disk.
    """

    def __init__(self, cache: CallCache):
        self.cache = cache
        self.written = 0  # records saved
        self.writes = 0  # DuckDB write batches (<= written)
        self._pending: list[CallRecord] = []
        self._added = 0  # sequence number of the newest record handed to save()
        self._durable = 0  # sequence number of the newest record on disk
        self._pending_lock = threading.Lock()
        self._write_lock = threading.Lock()

    def save(self, record: CallRecord) -> None:
        with self._pending_lock:
            self._pending.append(record)
            self._added += 1
            mine = self._added
        with self._write_lock:
            if self._durable >= mine:  # another thread's write took this record along
                return
            with self._pending_lock:
                batch, self._pending, upto = self._pending, [], self._added
            try:
                self.cache.write(batch)
            except BaseException:
                with self._pending_lock:  # not saved: the next writer tries these again
                    self._pending[:0] = batch
                raise
            self._durable = upto
            self.written += len(batch)
            self.writes += 1


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
