"""Inbox sensor: each new, complete dataset file becomes a dynamic partition and a run.

A file counts as complete once its size and modification time have stayed the same for
`settle_seconds` (writers still copying it are left for a later tick); temporary names
(`.part`, `.tmp`, dot-files) are never picked up. The cursor remembers each file's
(size, mtime, content digest) so a file is ingested once, and again only if it changes; a file
whose bytes equal an already ingested one is a duplicate and is skipped (its rows would enter the
selection twice). Only regular files that really live in the inbox count: a symlink that leads
out of it is refused, so the sensor never reads files the inbox owner did not put there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from reflection_assets.defs.automation import sensor_interval_seconds
from reflection_assets.defs.jobs import dataset_job, run_asset_selection
from reflection_assets.defs.partitions import FIRST_SEED, dataset_partitions, seed_partitions
from reflection_assets.hashing import file_sha256
from reflection_assets.ingest.registry import DatasetSource, lookup_source, partition_key_for, register_source
from reflection_assets.paths import inbox_dir
from reflection_assets.storage import storage_from_env

DATASET_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")
SETTLE_SECONDS = 5.0


def inbox_files(folder: Path, log: Callable[[str], None] = lambda _: None) -> list[Path]:
    """Dataset files directly in `folder`; a link whose target lies outside it is refused (and logged)."""
    if not folder.is_dir():
        return []
    root = folder.resolve()
    files = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in DATASET_SUFFIXES or not path.is_file():
            continue
        if not path.resolve().is_relative_to(root):
            log(f"inbox: {path.name} leads outside the inbox ({path.resolve()}); refused")
            continue
        files.append(path)
    return files


def unique_key(database: str | Path, wanted: str, source: str, taken: set[str]) -> str:
    """`wanted`, or `wanted_2`, ... when that key already belongs to another file."""
    key, n = wanted, 1
    while True:
        known = lookup_source(database, key)
        if key not in taken and (known is None or known.source == source):
            return key
        n += 1
        key = f"{wanted}_{n}"


def scan_inbox(
    folder: Path,
    database: str | Path,
    cursor: dict[str, list],
    now: float,
    settle: float = SETTLE_SECONDS,
    log: Callable[[str], None] = lambda _: None,
) -> tuple[list[tuple[str, Path]], dict[str, list]]:
    """New complete files as (partition key, path), and the cursor to store.

    The cursor maps each seen path to [size, mtime, sha256]; duplicates are recorded there too, so
    they are reported once, not at every tick.
    """
    new_cursor = dict(cursor)
    found: list[tuple[str, Path]] = []
    taken: set[str] = set()
    for path in inbox_files(folder, log):
        stat = path.stat()
        signature = [stat.st_size, stat.st_mtime]
        if now - stat.st_mtime < settle or cursor.get(str(path), [])[:2] == signature:
            continue
        digest = file_sha256(path)
        twin = next((p for p, seen in new_cursor.items() if p != str(path) and seen[2:] == [digest]), None)
        new_cursor[str(path)] = [*signature, digest]
        if twin is not None:
            log(f"inbox: {path.name} has the same bytes as {Path(twin).name}; skipped as a duplicate")
            continue
        key = unique_key(database, partition_key_for(path.name), str(path), taken)
        taken.add(key)
        found.append((key, path))
    return found, new_cursor


@dg.sensor(
    job=dataset_job,
    minimum_interval_seconds=sensor_interval_seconds(),
    description="Turns each new complete file in the inbox folder into a dataset partition and a run.",
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def inbox_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    cursor = json.loads(context.cursor) if context.cursor else {}
    database = storage_from_env().store()
    found, new_cursor = scan_inbox(inbox_dir(), database, cursor, time.time(), log=context.log.info)
    run_requests = []
    assets = run_asset_selection(context.repository_def.get_job(dataset_job.name)) if found else []
    for key, path in found:
        register_source(database, key, DatasetSource(str(path)))
        run_requests.append(
            dg.RunRequest(
                run_key=f"{key}:{new_cursor[str(path)][2]}",
                partition_key=key,
                asset_selection=assets,
                run_config={"ops": {"raw_instructions": {"config": {"source": str(path)}}}},
                tags={"reflection/source": path.name},
            )
        )
        context.log.info(f"inbox: {path.name} -> partition {key}")
    return dg.SensorResult(
        run_requests=run_requests,
        # Seed 0 of the arm x seed partitions, so automation trains every arm once (drivers add more seeds).
        dynamic_partitions_requests=[
            dataset_partitions.build_add_request([k for k, _ in found]),
            seed_partitions.build_add_request([FIRST_SEED]),
        ]
        if found
        else [],
        cursor=json.dumps(new_cursor),
    )
