"""The cache statements rewritten for Postgres (issue 32), on the local DuckDB file, vs the ones they replaced,
side by side in one run: `llm_calls` lookups (`IN (SELECT unnest(?::VARCHAR[]))` vs a registered frame joined)
and the near-duplicate loader (rows, then cached signatures by id, vs one LEFT JOIN).

    python benchmarks/cache_statements.py [--rows 50000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from reflection_assets.database import connect
from reflection_assets.ingest.near_duplicate_store import SIGNATURES_TABLE, load_other_partitions, store_signatures
from reflection_assets.ingest.near_duplicates import NearDuplicateIndex
from reflection_assets.teacher.cache import TABLE, CallCache
from reflection_assets.teacher.types import CALL_OK


def lookup_before(path: Path, keys: list[str]) -> dict[str, dict]:
    """4e27b10's CallCache.lookup (one chunk of keys): the keys registered as a frame and joined."""
    found = {}
    with connect(path) as con:
        con.register("wanted_keys", pd.DataFrame({"call_key": keys}))
        frame = con.execute(f"SELECT c.* FROM {TABLE} c JOIN wanted_keys w USING (call_key) WHERE c.status = ?",
                            [CALL_OK]).df()
    for row in frame.to_dict("records"):
        found[row["call_key"]] = row
    return found


def load_before(path: Path, dataset: str, index: NearDuplicateIndex) -> int:
    """4e27b10's load_other_partitions with every signature cached: one LEFT JOIN, rows and blobs together (the
    text columns read only where a signature is missing, as there)."""
    scheme, added = index.settings.scheme(), 0
    text = ", ".join(f"CASE WHEN s.signature IS NULL THEN r.{c} END" for c in ("source_file", "source_file"))
    with connect(path, read_only=True) as conn:
        cursor = conn.execute(
            f"SELECT r.dataset, r.row_id, r.source_file, r.source_row, s.signature, {text} FROM raw_instructions r "
            f"LEFT JOIN {SIGNATURES_TABLE} s ON s.row_id = r.row_id AND s.scheme = ? WHERE r.dataset <> ? "
            "ORDER BY r.dataset, r.source_file, r.source_row", [scheme, dataset])
        while batch := cursor.fetchmany(10_000):
            for partition, row_id, source_file, source_row, blob, *_ in batch:
                index.add(row_id, f"partition {partition}: {source_file} row {source_row}",
                          np.frombuffer(blob, dtype=np.uint32))
                added += 1
    return added


def timed(work) -> float:  # noqa: ANN001
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cache-statements-"))
    path = folder / "warehouse.duckdb"
    rows = pd.DataFrame({"call_key": [f"k{i:08d}" for i in range(args.rows)], "status": CALL_OK})
    CallCache(path).count()  # the table, by its own statement
    with connect(path) as con:
        con.register("rows", rows)
        con.execute(f"INSERT INTO {TABLE} (call_key, status) SELECT call_key, status FROM rows")
        raw = pd.DataFrame({"dataset": np.where(np.arange(args.rows) % 2, "a", "b"),
                            "row_id": [f"r{i:08d}" for i in range(args.rows)], "source_file": "f.jsonl",
                            "source_row": np.arange(args.rows)})
        con.register("raw", raw)
        con.execute("CREATE TABLE raw_instructions AS SELECT * FROM raw")
    scheme = NearDuplicateIndex().settings.scheme()
    num_perm = NearDuplicateIndex().settings.num_perm
    rng = np.random.default_rng(0)
    store_signatures(path, scheme, [(r, rng.integers(0, 2**32, num_perm, dtype=np.uint32)) for r in raw["row_id"]])
    wanted = list(rows["call_key"].sample(5000, random_state=0))
    cache = CallCache(path)
    seconds: dict[str, list[float]] = {k: [] for k in ("lookup_before", "lookup_now", "load_before", "load_now")}
    for _ in range(args.repeats):  # alternating, so drift hits both alike
        seconds["lookup_before"].append(timed(lambda: lookup_before(path, wanted)))
        seconds["lookup_now"].append(timed(lambda: cache.lookup(wanted)))
        seconds["load_before"].append(timed(lambda: load_before(path, "c", NearDuplicateIndex())))
        seconds["load_now"].append(timed(lambda: load_other_partitions(
            partial(connect, path, read_only=True), path, "c", NearDuplicateIndex())))
    medians = {k: round(statistics.median(v), 4) for k, v in seconds.items()}
    print(json.dumps({"rows": args.rows, "medians_s": medians,
                      "lookup_now_over_before": round(medians["lookup_now"] / medians["lookup_before"], 2),
                      "load_now_over_before": round(medians["load_now"] / medians["load_before"], 2)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
