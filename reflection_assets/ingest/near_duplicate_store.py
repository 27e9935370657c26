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

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from reflection_assets.database import connect, table_exists
from reflection_assets.ingest.near_duplicates import NearDuplicateIndex, dedup_text
from reflection_assets.schema import Pair

SIGNATURES_TABLE = "near_duplicate_signatures"
RAW_TABLE = "raw_instructions"  # the ingest asset's accepted rows (the warehouse IO manager's table)
_FETCH_ROWS = 10_000  # rows per fetch: bounded memory while loading a large warehouse
_CREATE = (
    f"CREATE TABLE IF NOT EXISTS {SIGNATURES_TABLE} "
    "(row_id VARCHAR, scheme VARCHAR, signature BLOB, PRIMARY KEY (row_id, scheme))"
)


def load_other_partitions(database: str | Path, dataset: str, index: NearDuplicateIndex) -> int:
    """Add to `index` the kept rows of every partition but `dataset`; returns how many were added.

    Missing signatures are computed from the rows' text and cached for the next ingest.
    """
    if not Path(database).exists():
        return 0
    scheme = index.settings.scheme()
    added = 0
    fresh: list[tuple[str, np.ndarray]] = []
    with connect(database, read_only=True) as conn:
        if not table_exists(conn, RAW_TABLE):
            return 0
        cached = table_exists(conn, SIGNATURES_TABLE)
        signature = "s.signature" if cached else "NULL"
        join = f"LEFT JOIN {SIGNATURES_TABLE} s ON s.row_id = r.row_id AND s.scheme = ?" if cached else ""
        texts = ("history", "instruction", "input", "output")  # read only where a signature is missing
        text = ", ".join(f"CASE WHEN {signature} IS NULL THEN r.{column} END" for column in texts)
        cursor = conn.execute(
            f"SELECT r.dataset, r.row_id, r.source_file, r.source_row, {signature}, {text} "
            f"FROM {RAW_TABLE} r {join} WHERE r.dataset <> ? ORDER BY r.dataset, r.source_file, r.source_row",
            [scheme, dataset] if cached else [dataset],
        )
        while batch := cursor.fetchmany(_FETCH_ROWS):
            for partition, row_id, source_file, source_row, blob, history, instruction, input_, output in batch:
                if blob is None:
                    fields = {"history": history, "instruction": instruction, "input": input_, "output": output}
                    pair = Pair.from_row(fields)
                    computed = index.signature(dedup_text(pair))
                    if computed is None:
                        continue
                    fresh.append((row_id, computed))
                values = computed if blob is None else np.frombuffer(blob, dtype=np.uint32)
                index.add(row_id, f"partition {partition}: {source_file} row {source_row}", values)
                added += 1
    if fresh:
        store_signatures(database, scheme, fresh)
    return added


def store_signatures(database: str | Path, scheme: str, rows: Iterable[tuple[str, np.ndarray]]) -> int:
    """Cache (row_id, signature) pairs under `scheme`; rows already cached are left as they are."""
    import pyarrow as pa

    rows = list(rows)
    if not rows:
        return 0
    table = pa.table(
        {
            "row_id": pa.array([row_id for row_id, _ in rows], pa.string()),
            "scheme": pa.array([scheme] * len(rows), pa.string()),
            "signature": pa.array([np.asarray(values, dtype=np.uint32).tobytes() for _, values in rows], pa.binary()),
        }
    )
    with connect(database) as conn:
        conn.execute(_CREATE)
        conn.register("incoming_signatures", table)
        conn.execute(f"INSERT OR IGNORE INTO {SIGNATURES_TABLE} SELECT * FROM incoming_signatures")
        conn.unregister("incoming_signatures")
    return len(rows)
