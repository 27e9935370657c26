"""One dataset partition ingested: read from its source, near-duplicates removed, signatures kept.

The near-duplicate index starts from the other partitions' kept rows (unless the settings say
within the partition only), the reader rejects the rows it finds, and this partition's kept rows
are stored for the partitions ingested after it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reflection_assets.ingest.near_duplicate_store import TablesOpener, load_other_partitions, store_signatures
from reflection_assets.ingest.near_duplicates import NearDuplicateIndex, NearDuplicateSettings
from reflection_assets.ingest.readers import ReadResult
from reflection_assets.ingest.reasons import NEAR_DUPLICATE
from reflection_assets.ingest.registry import DatasetSource, read_partition


@dataclass(frozen=True)
class IngestedPartition:
    source: DatasetSource
    result: ReadResult
    near_duplicates: int  # rows rejected as near-duplicates
    near_duplicate_check: str  # how they were looked for ("off" when not), for the log and the metadata


def ingest_partition(
    tables: TablesOpener,
    store: str | Path,
    key: str,
    override: DatasetSource | None,
    dedup: NearDuplicateSettings,
    progress: Callable[[int, int], None] | None = None,
) -> IngestedPartition:
    """Read partition `key` (`override`: the run's own source) with near-duplicates removed per `dedup`.

    `tables` opens a read connection over the asset tables (the other partitions' kept rows); `store` holds the
    source registry and the signature cache.
    """
    index = NearDuplicateIndex(dedup) if dedup.enabled else None
    across = index is not None and dedup.across_partitions
    earlier = load_other_partitions(tables, store, key, index) if across else 0
    source, result = read_partition(store, key, override, index, progress)
    if index is not None:  # this partition's kept rows, for the partitions ingested after it
        store_signatures(store, dedup.scheme(), index.signatures_from(earlier))
    scope = f"and {earlier} kept rows of other partitions" if dedup.across_partitions else "only"
    check = f"Jaccard >= {dedup.threshold} on {dedup.shingle_size}-word shingles, this partition {scope}"
    removed = result.reason_counts().get(NEAR_DUPLICATE, 0)
    return IngestedPartition(source, result, removed, check if index is not None else "off")
