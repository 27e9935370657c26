"""Content-addressed cache of student losses (DuckDB table `student_scores`).

One row per scored sequence: its key hashes everything that decides the number -- model
fingerprint, template and its rendered hash, start token, max_length, dtype, device kind, scorer
version -- and the exact token ids of the context and of the scored text (the texts as rendered,
truncation included). Per-sequence rows let IFD, r-IFD and both selection stages share work.

A connection is opened only for one short read or write batch, never across a model call
(`reflection_assets.database`, which waits out another process's lock).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from reflection_assets.database import TableFile
from reflection_assets.hashing import content_hash
from reflection_assets.scoring.sequences import Seq

# Bump when the same key would now map to a different number (tokenization or loss rules change).
SCORER_VERSION = "1"
TABLE = "student_scores"

_CREATE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    key VARCHAR PRIMARY KEY,
    loss DOUBLE PRECISION NOT NULL,
    n_tokens INTEGER NOT NULL,
    model_fingerprint VARCHAR,
    template VARCHAR,
    template_hash VARCHAR,
    start_token VARCHAR,
    max_length INTEGER,
    dtype VARCHAR,
    device_kind VARCHAR,
    scorer_version VARCHAR,
    created_at TIMESTAMP DEFAULT current_timestamp
)"""
_SCOPE_COLUMNS = (
    "model_fingerprint",
    "template",
    "template_hash",
    "start_token",
    "max_length",
    "dtype",
    "device_kind",
    "scorer_version",
)


@dataclass(frozen=True)
class CacheScope:
    """Everything besides the token ids that decides a loss."""

    model_fingerprint: str
    template: str
    template_hash: str
    start_token: str
    max_length: int
    dtype: str
    device_kind: str
    scorer_version: str = SCORER_VERSION

    def key(self) -> str:
        return content_hash(asdict(self), length=64)


def ids_hash(ids: Sequence[int]) -> str:
    return hashlib.sha256(",".join(map(str, ids)).encode("ascii")).hexdigest()


def sequence_key(scope_key: str, seq: Seq) -> str:
    """Cache key of one scored sequence under a scope (pass `scope.key()`, computed once)."""
    return content_hash([scope_key, ids_hash(seq.context), ids_hash(seq.scored)], length=64)


class StudentScoreCache(TableFile):
    """Short-lived connections to the `student_scores` table of one DuckDB file (or the shared Postgres store)."""

    table = TABLE
    create_sql = _CREATE

    def get(self, keys: Sequence[str]) -> dict[str, float]:
        """Losses already stored for `keys` (missing keys are absent from the result)."""
        return {key: float(loss) for key, loss in self.stored(keys, "loss").items()}

    def put(self, scope: CacheScope, losses: Mapping[str, tuple[float, int]]) -> None:
        """Store {key: (loss, n_scored_tokens)}; keys already present are kept as they are."""
        if not losses:
            return
        keys = list(losses)
        scope_values = [getattr(scope, name) for name in _SCOPE_COLUMNS]
        placeholders = ", ".join("?" for _ in scope_values)
        with self._connection() as connection:
            connection.execute(
                f"INSERT INTO {TABLE} (key, loss, n_tokens, {', '.join(_SCOPE_COLUMNS)}) "
                f"SELECT unnest(?::VARCHAR[]), unnest(?::DOUBLE PRECISION[]), unnest(?::INTEGER[]), {placeholders} "
                "ON CONFLICT DO NOTHING",
                [keys, [losses[k][0] for k in keys], [losses[k][1] for k in keys], *scope_values],
            )

    def count(self) -> int:
        with self._connection() as connection:
            return int(connection.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0])
