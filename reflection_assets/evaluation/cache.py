"""Content-addressed cache of evaluation outputs (DuckDB table `eval_outputs`).

A generation is keyed by the base model's fingerprint, the adapter's checkpoint key, the prompt
ids and the decoding parameters; a judge verdict by the teacher's identity and the two answers;
a likelihood by model, adapter and ids. So a re-run of the report costs nothing and a new arm
costs only itself. Short connections with lock retries, like the student-score cache.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import duckdb
from tenacity import retry, retry_if_exception, stop_after_delay, wait_random_exponential

from reflection_assets.hashing import content_hash
from reflection_assets.scoring.cache import LOCK_WAIT_SECONDS, is_lock_error

# Bump when the same key would now map to a different output (decoding or extraction rules change).
EVAL_CACHE_VERSION = "1"
TABLE = "eval_outputs"

_CREATE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    key VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,
    payload VARCHAR NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp
)"""

_retry_on_lock = retry(
    retry=retry_if_exception(is_lock_error),
    wait=wait_random_exponential(multiplier=0.05, max=2.0),
    stop=stop_after_delay(LOCK_WAIT_SECONDS),
    reraise=True,
)


def output_key(kind: str, parts: Any) -> str:
    return content_hash([EVAL_CACHE_VERSION, kind, parts], length=64)


class EvalOutputCache:
    """Short-lived connections to the `eval_outputs` table of one DuckDB file."""

    def __init__(self, db_path: str | Path) -> None:
        self.db_path = Path(db_path)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        connection = duckdb.connect(str(self.db_path))
        try:
            connection.execute(_CREATE)
            yield connection
        finally:
            connection.close()

    @_retry_on_lock
    def get(self, keys: Sequence[str]) -> dict[str, dict]:
        if not keys:
            return {}
        with self._connection() as connection:
            rows = connection.execute(
                f"SELECT key, payload FROM {TABLE} WHERE key IN (SELECT unnest($1::VARCHAR[]))", [list(keys)]
            ).fetchall()
        return {key: json.loads(payload) for key, payload in rows}

    @_retry_on_lock
    def put(self, kind: str, payloads: Mapping[str, dict]) -> None:
        """Store {key: payload}; keys already present are kept as they are."""
        if not payloads:
            return
        keys = list(payloads)
        with self._connection() as connection:
            connection.execute(
                f"INSERT OR IGNORE INTO {TABLE} (key, kind, payload) "
                "SELECT unnest($1::VARCHAR[]), $2, unnest($3::VARCHAR[])",
                [keys, kind, [json.dumps(payloads[k], sort_keys=True) for k in keys]],
            )

    @_retry_on_lock
    def count(self, kind: str | None = None) -> int:
        with self._connection() as connection:
            if kind is None:
                return int(connection.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0])
            return int(connection.execute(f"SELECT count(*) FROM {TABLE} WHERE kind = ?", [kind]).fetchone()[0])
