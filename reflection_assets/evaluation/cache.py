"""Content-addressed cache of evaluation outputs (DuckDB table `eval_outputs`).

A generation is keyed by the base model's fingerprint, the adapter's checkpoint key, the prompt
ids and the decoding parameters; a judge verdict by the teacher's identity and the two answers;
a likelihood by model, adapter and ids. So a re-run of the report costs nothing and a new arm
costs only itself. Short connections through the one DuckDB helper (`reflection_assets.database`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from reflection_assets.database import TableFile
from reflection_assets.hashing import content_hash

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

def output_key(kind: str, parts: Any) -> str:
    return content_hash([EVAL_CACHE_VERSION, kind, parts], length=64)


class EvalOutputCache(TableFile):
    """Short-lived connections to the `eval_outputs` table of one DuckDB file (or the shared Postgres store)."""

    table = TABLE
    create_sql = _CREATE

    def get(self, keys: Sequence[str]) -> dict[str, dict]:
        """Payloads already stored for `keys` (missing keys are absent from the result)."""
        return {key: json.loads(payload) for key, payload in self.stored(keys, "payload").items()}

    def put(self, kind: str, payloads: Mapping[str, dict]) -> None:
        """Store {key: payload}; keys already present are kept as they are."""
        if not payloads:
            return
        keys = list(payloads)
        with self._connection() as connection:
            connection.execute(
                f"INSERT INTO {TABLE} (key, kind, payload) "
                "SELECT unnest(?::VARCHAR[]), CAST(? AS VARCHAR), unnest(?::VARCHAR[]) ON CONFLICT DO NOTHING",
                [keys, kind, [json.dumps(payloads[k], sort_keys=True) for k in keys]],
            )

    def count(self, kind: str | None = None) -> int:
        with self._connection() as connection:
            if kind is None:
                return int(connection.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0])
            return int(connection.execute(f"SELECT count(*) FROM {TABLE} WHERE kind = ?", [kind]).fetchone()[0])
