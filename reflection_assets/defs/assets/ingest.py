"""Ingest: raw instruction rows (accepted) and rejected rows with reasons, per dataset partition."""

from functools import partial

import dagster as dg
import pandas as pd

from reflection_assets.defs.assets.common import ACCOUNTED, PARTITION_META, markdown_preview
from reflection_assets.defs.partitions import dataset_partitions
from reflection_assets.documented import help_text, mirrored
from reflection_assets.ingest.detect import DatasetFormat
from reflection_assets.ingest.errors import DatasetReadError
from reflection_assets.ingest.near_duplicates import NearDuplicateSettings
from reflection_assets.ingest.partition import IngestedPartition, ingest_partition
from reflection_assets.ingest.registry import DatasetSource, UnknownDatasetError
from reflection_assets.paths import shown_path
from reflection_assets.progress import Progress
from reflection_assets.teacher.estimate import calls_saved
from resources.tracking import MlflowTracking
from resources.warehouse import Warehouse


class IngestConfig(dg.Config):
    """Where to read a dataset partition from; empty `source` means the registered one."""

    # Defaults and meaning: DatasetSource's, the run's own source over the registered one.
    source: str = mirrored(
        DatasetSource, "source", default="",
        description=help_text(DatasetSource, "source") + " ('': the partition's registered source)",
    )
    format: DatasetFormat = mirrored(DatasetSource, "format")
    column_map: dict[str, str] = mirrored(DatasetSource, "column_map")
    near_duplicates: bool = mirrored(NearDuplicateSettings, "enabled")
    near_duplicate_threshold: float = mirrored(NearDuplicateSettings, "threshold")
    near_duplicate_shingle_size: int = mirrored(NearDuplicateSettings, "shingle_size")
    near_duplicate_num_perm: int = mirrored(NearDuplicateSettings, "num_perm")
    near_duplicates_across_partitions: bool = mirrored(NearDuplicateSettings, "across_partitions")

    def near_duplicate_settings(self) -> NearDuplicateSettings:
        return NearDuplicateSettings(
            enabled=self.near_duplicates,
            threshold=self.near_duplicate_threshold,
            shingle_size=self.near_duplicate_shingle_size,
            num_perm=self.near_duplicate_num_perm,
            across_partitions=self.near_duplicates_across_partitions,
        )


@dg.multi_asset(
    outs={
        "raw_instructions": dg.AssetOut(
            description="Accepted instruction/response pairs with stable content ids and provenance.",
            metadata=PARTITION_META,
            kinds={"duckdb", "python"},
            group_name="ingest",
        ),
        "rejected_rows": dg.AssetOut(
            description="Input rows that could not be used, with raw text, location and reason.",
            metadata=PARTITION_META,
            kinds={"duckdb"},
            group_name="ingest",
        ),
    },
    partitions_def=dataset_partitions,
    # One ingest at a time (`make concurrency` sets the `ingest` pool to 1 slot): a partition's near-duplicate
    # check reads the kept rows of the others, which two ingests running at once could not see of each other.
    pool="ingest",
    check_specs=[
        dg.AssetCheckSpec(
            ACCOUNTED,
            asset="raw_instructions",
            description="Every row read is either accepted or rejected with a reason.",
        )
    ],
)
def raw_instructions(
    context: dg.AssetExecutionContext, config: IngestConfig, warehouse: Warehouse, mlflow: MlflowTracking
):
    """Read one dataset partition with the format readers and split accepted / rejected rows; near-duplicates
    (of a row kept earlier in it or, unless switched off, of another partition's kept row) are rejected too."""
    key = context.partition_key
    ingested = read_partition_or_fail(key, config, warehouse, Progress(context.log.info, f"ingest {key}"))
    result = ingested.result
    accepted, rejected = result.accepted_frame(key), result.rejected_frame(key)
    context.log.info(f"{key}: {result.counts()} reasons={result.reason_counts()} format={result.format} "
                     f"near-duplicate check: {ingested.near_duplicate_check}")
    link = mlflow.log(context, "raw_instructions", metrics=ingest_metrics(ingested), params=ingest_params(ingested))
    metadata = {**accepted_metadata(ingested, accepted), **link}
    yield dg.Output(accepted, output_name="raw_instructions", metadata=metadata)
    yield dg.Output(rejected, output_name="rejected_rows", metadata=rejected_metadata(rejected, ingested))
    yield dg.AssetCheckResult(
        check_name=ACCOUNTED,
        asset_key="raw_instructions",
        passed=result.rows_read == len(accepted) + len(rejected),
        metadata=result.counts(),
    )


def read_partition_or_fail(
    key: str, config: IngestConfig, warehouse: Warehouse, progress: Progress
) -> IngestedPartition:
    """The partition read with the run's settings; a bad setting or an unreadable source fails the run
    with its reason (no retry: another attempt would read the same thing)."""
    override = DatasetSource(config.source, config.format, dict(config.column_map)) if config.source else None
    try:
        dedup = config.near_duplicate_settings()
    except ValueError as error:
        raise dg.Failure(description=f"near-duplicate settings: {error}", allow_retries=False) from None
    try:
        return ingest_partition(
            partial(warehouse.connection, read_only=True), warehouse.store, key, override, dedup, progress
        )
    except (DatasetReadError, UnknownDatasetError) as error:
        raise dg.Failure(description=str(error), allow_retries=False) from None


def near_duplicate_counts(ingested: IngestedPartition) -> dict[str, int]:
    """Rows removed as near-duplicates and the teacher calls that saves (two per row)."""
    removed = ingested.near_duplicates
    return {"near_duplicates": removed, "near_duplicate_calls_saved": calls_saved(removed)}


def ingest_metrics(ingested: IngestedPartition) -> dict[str, int]:
    reasons = {f"rejected_{reason}": n for reason, n in ingested.result.reason_counts().items()}
    return {**ingested.result.counts(), **near_duplicate_counts(ingested), **reasons}


def ingest_params(ingested: IngestedPartition) -> dict[str, str]:
    return {"source": ingested.source.source, "format": ingested.result.format}


def accepted_metadata(ingested: IngestedPartition, accepted: pd.DataFrame) -> dict:
    counts = {**ingested.result.counts(), **near_duplicate_counts(ingested)}
    return {
        **{k: dg.MetadataValue.int(v) for k, v in counts.items()},
        "near_duplicate_check": ingested.near_duplicate_check,
        "format": ingested.result.format,
        "source": shown_path(ingested.source.source),
        "preview": markdown_preview(accepted, ["row_id", "instruction", "input", "output"]),
    }


def rejected_metadata(rejected: pd.DataFrame, ingested: IngestedPartition) -> dict:
    return {
        "rejected": dg.MetadataValue.int(len(rejected)),
        "reasons": dg.MetadataValue.json(ingested.result.reason_counts()),
    }

