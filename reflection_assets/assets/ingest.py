"""Ingest: raw instruction rows (accepted) and rejected rows with reasons, per dataset partition."""


import dagster as dg

from reflection_assets.assets.common import ACCOUNTED, PARTITION_META, markdown_preview
from reflection_assets.ingest.detect import DatasetFormat
from reflection_assets.ingest.errors import DatasetReadError
from reflection_assets.ingest.readers import read_dataset
from reflection_assets.partitions import dataset_partitions
from reflection_assets.sources import DatasetSource, UnknownDatasetError, resolve_source
from resources.tracking import MlflowTracking
from resources.warehouse import Warehouse


class IngestConfig(dg.Config):
    """Where to read a dataset partition from; empty `source` means the registered one."""

    source: str = ""
    format: DatasetFormat = "auto"
    column_map: dict[str, str] = {}


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
    """Read one dataset partition with the format readers and split accepted / rejected rows."""
    key = context.partition_key
    override = DatasetSource(config.source, config.format, dict(config.column_map)) if config.source else None
    try:
        source = resolve_source(warehouse.database, key, override)
        result = read_dataset(source.source, format=source.format, column_map=source.column_map or None)
    except (DatasetReadError, UnknownDatasetError) as error:
        raise dg.Failure(description=str(error), allow_retries=False) from None

    accepted = result.accepted_frame(key)
    rejected = result.rejected_frame(key)
    reasons = rejected["reason"].value_counts().to_dict() if len(rejected) else {}
    counts = {"rows_read": result.rows_read, "accepted": len(accepted), "rejected": len(rejected)}
    context.log.info(f"{key}: {counts} reasons={reasons} format={result.format}")

    link = mlflow.log(
        context,
        "raw_instructions",
        metrics={**counts, **{f"rejected_{r}": n for r, n in reasons.items()}},
        params={"source": source.source, "format": result.format},
    )
    yield dg.Output(
        accepted,
        output_name="raw_instructions",
        metadata={
            **{k: dg.MetadataValue.int(v) for k, v in counts.items()},
            "format": result.format,
            "source": source.source,
            "preview": markdown_preview(accepted, ["row_id", "instruction", "input", "output"]),
            **link,
        },
    )
    yield dg.Output(
        rejected,
        output_name="rejected_rows",
        metadata={
            "rejected": dg.MetadataValue.int(len(rejected)),
            "reasons": dg.MetadataValue.json(reasons),
        },
    )
    yield dg.AssetCheckResult(
        check_name=ACCOUNTED,
        asset_key="raw_instructions",
        passed=result.rows_read == len(accepted) + len(rejected),
        metadata=counts,
    )

