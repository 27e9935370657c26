"""The other partitions' kept rows for a NearDuplicateIndex, with their signatures cached in the warehouse.

A signature is a function of a row's content (its row_id is the content's hash) and of the settings'
scheme, so the table `near_duplicate_signatures` (row_id, scheme, signature) is a cache, not a record:
the rows a partition is checked against are always those `raw_instructions` holds now for the other
partitions (a re-materialized or dropped partition leaves nothing stale behind), and a row without a
signature under the current scheme (ingested before this check, or under other settings) is hashed
from its text once and cached. Reading cached signatures and re-inserting them into the LSH index is
several times cheaper than re-hashing every earlier row's text at each ingest (BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from reflection_assets.database import connect, exists, table_exists
from reflection_assets.ingest.near_duplicates import NearDuplicateIndex, dedup_text
from reflection_assets.schema import Pair

SIGNATURES_TABLE = "near_duplicate_signatures"
RAW_TABLE = "raw_instructions"  # the ingest asset's accepted rows (the warehouse IO manager's table)
_CHUNK = 5_000  # row ids per cache lookup or text fetch: bounded statements and memory on a large warehouse
_CREATE = (
    f"CREATE TABLE IF NOT EXISTS {SIGNATURES_TABLE} "
    "(row_id VARCHAR, scheme VARCHAR, signature BYTEA, PRIMARY KEY (row_id, scheme))"
)
_TEXTS = ("history", "instruction", "input", "output")  # read only for rows without a cached signature

# Opens a read connection where the asset tables are queried by name (the warehouse file, or the shared tables).
TablesOpener = Callable[[], AbstractContextManager[Any]]


def load_other_partitions(tables: TablesOpener, store: str | Path, dataset: str, index: NearDuplicateIndex) -> int:
    """Add to `index` the kept rows of every partition but `dataset`; returns how many were added.

    The rows come from `raw_instructions` (through `tables`), their signatures from the cache in `store`; missing
    signatures are computed from the rows' text and cached for the next ingest.
    """
    scheme = index.settings.scheme()
    with tables() as conn:
        if not table_exists(conn, RAW_TABLE):
            return 0
        rows = conn.execute(
            f"SELECT dataset, row_id, source_file, source_row FROM {RAW_TABLE} WHERE dataset <> ? "
            "ORDER BY dataset, source_file, source_row",
            [dataset],
        ).fetchall()
    cached = cached_signatures(store, scheme, [row_id for _, row_id, _, _ in rows])
    computed = _signatures_from_text(tables, dataset, index, [r[1] for r in rows if r[1] not in cached])
    added = 0
    for partition, row_id, source_file, source_row in rows:
        values = cached.get(row_id)
        if values is None:
            values = computed.get(row_id)
        if values is None:  # no text to sign (an empty row): nothing to match
            continue
        index.add(row_id, f"partition {partition}: {source_file} row {source_row}", values)
        added += 1
    if computed:
        store_signatures(store, scheme, computed.items())
    return added


def cached_signatures(store: str | Path, scheme: str, row_ids: Sequence[str]) -> dict[str, np.ndarray]:
    """The signatures cached under `scheme` for `row_ids`."""
    if not row_ids or not exists(store):
        return {}
    found: dict[str, np.ndarray] = {}
    with connect(store) as conn:
        if not table_exists(conn, SIGNATURES_TABLE):
            return {}
        for start in range(0, len(row_ids), _CHUNK):
            part = list(row_ids[start : start + _CHUNK])
            for row_id, blob in conn.execute(
                f"SELECT row_id, signature FROM {SIGNATURES_TABLE} "
                "WHERE scheme = ? AND row_id IN (SELECT unnest(?::VARCHAR[]))",
                [scheme, part],
            ).fetchall():
                found[row_id] = np.frombuffer(blob, dtype=np.uint32)
    return found


def _signatures_from_text(
    tables: TablesOpener, dataset: str, index: NearDuplicateIndex, row_ids: Sequence[str]
) -> dict[str, np.ndarray]:
    """Signatures of `row_ids` computed from their text in `raw_instructions` (rows with no text to sign are absent)."""
    computed: dict[str, np.ndarray] = {}
    if not row_ids:
        return computed
    with tables() as conn:
        for start in range(0, len(row_ids), _CHUNK):
            part = list(row_ids[start : start + _CHUNK])
            for row_id, *texts in conn.execute(
                f"SELECT row_id, {', '.join(_TEXTS)} FROM {RAW_TABLE} "
                "WHERE dataset <> ? AND row_id IN (SELECT unnest(?::VARCHAR[]))",
                [dataset, part],
            ).fetchall():
                signature = index.signature(dedup_text(Pair.from_row(dict(zip(_TEXTS, texts, strict=True)))))
                if signature is not None:
                    computed[row_id] = signature
    return computed


def store_signatures(store: str | Path, scheme: str, rows: Iterable[tuple[str, np.ndarray]]) -> int:
    """Cache (row_id, signature) pairs under `scheme`; rows already cached are left as they are."""
    rows = list(rows)
    if not rows:
        return 0
    with connect(store) as conn:
        conn.execute(_CREATE)
        conn.execute(
            f"INSERT INTO {SIGNATURES_TABLE} SELECT unnest(?::VARCHAR[]), CAST(? AS VARCHAR), unnest(?::BYTEA[]) "
            "ON CONFLICT DO NOTHING",
            [[row_id for row_id, _ in rows], scheme,
             [np.asarray(values, dtype=np.uint32).tobytes() for _, values in rows]],
        )
    return len(rows)
