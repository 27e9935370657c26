"""Which file (or dataset name) each dataset partition reads.

Dynamic partition keys are short names; the source behind each one is recorded in the
warehouse's `dataset_sources` table when the partition is registered (by the inbox sensor or
the demo driver), so a re-materialization from the UI finds the same file again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from reflection_assets.database import connect, exists, table_exists
from reflection_assets.demo_data import DEMO_PARTITION, DEMO_TRAIN_PATH
from reflection_assets.documented import documented
from reflection_assets.ingest.near_duplicates import NearDuplicateIndex
from reflection_assets.ingest.readers import ReadResult, read_dataset

REGISTRY_TABLE = "dataset_sources"


class UnknownDatasetError(LookupError):
    """A partition with no registered source."""


@dataclass(frozen=True)
class DatasetSource:
    source: str = documented(what="a file, a folder or a hub dataset name")
    format: str = documented(
        "auto", "record shape (alpaca, sharegpt, messages) or container (csv, parquet, hf); auto: detected"
    )
    column_map: dict[str, str] = documented(
        what="our field (instruction, input, output, system) -> the file's column name; unnamed fields keep "
        "their own name",
        default_factory=dict,
    )


def partition_key_for(source: str) -> str:
    """A readable partition key from a file, folder or dataset name (`data/My File.jsonl` -> `my_file`)."""
    name = Path(source.rstrip("/")).name
    for suffix in (".jsonl", ".json", ".csv", ".parquet", ".tsv"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    key = re.sub(r"[^a-z0-9_-]+", "_", name.lower()).strip("_-")
    return key[:64] or "dataset"


def register_source(database: str | Path, key: str, source: DatasetSource) -> None:
    """Record (or update) the source of partition `key`."""
    with connect(database) as conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {REGISTRY_TABLE} (dataset VARCHAR PRIMARY KEY, source VARCHAR, "
            "format VARCHAR, column_map VARCHAR, registered_at TIMESTAMP)"
        )
        conn.execute(
            f"INSERT INTO {REGISTRY_TABLE} VALUES (?, ?, ?, ?, ?) ON CONFLICT (dataset) DO UPDATE SET "
            "source = excluded.source, format = excluded.format, column_map = excluded.column_map, "
            "registered_at = excluded.registered_at",
            [key, source.source, source.format, json.dumps(source.column_map), datetime.now(timezone.utc)],
        )


def lookup_source(database: str | Path, key: str) -> DatasetSource | None:
    if not exists(database):
        return None
    with connect(database) as conn:
        if not table_exists(conn, REGISTRY_TABLE):
            return None
        row = conn.execute(
            f"SELECT source, format, column_map FROM {REGISTRY_TABLE} WHERE dataset = ?", [key]
        ).fetchone()
    return DatasetSource(row[0], row[1], json.loads(row[2] or "{}")) if row else None


def resolve_source(database: str | Path, key: str, override: DatasetSource | None = None) -> DatasetSource:
    """The run's explicit source wins, then the registry, then the embedded demo set for `demo`."""
    if override is not None and override.source:
        return override
    registered = lookup_source(database, key)
    if registered is not None:
        return registered
    if key == DEMO_PARTITION:
        return DatasetSource(str(DEMO_TRAIN_PATH))
    raise UnknownDatasetError(
        f"dataset partition {key!r} has no registered source: drop the file into the inbox folder, "
        "or give `source` in the run config"
    )


def read_partition(
    database: str | Path,
    key: str,
    override: DatasetSource | None = None,
    near_duplicates: NearDuplicateIndex | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[DatasetSource, ReadResult]:
    """Read dataset partition `key` from its source (`resolve_source`) with the format readers,
    rejecting the rows `near_duplicates` (when given) matches to a kept row."""
    source = resolve_source(database, key, override)
    result = read_dataset(
        source.source, format=source.format, column_map=source.column_map or None, near_duplicates=near_duplicates,
        progress=progress,
    )
    return source, result
