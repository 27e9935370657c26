"""The asset tables' IO manager for the shared deployment: Delta Lake tables on an object store
(`reflection_assets.object_tables`), chosen by `REFLECTION_STORAGE=shared` (reflection_assets.defs.deployment).

It reads the same `partition_expr` metadata as the DuckDB IO manager: a partitioned asset writes one partition
per materialization (`dataset = 'alpaca'`, or `arm = 'selective' AND seed = '0'`), and a downstream asset reads
the partitions it depends on. A commit that loses a race for the same partition fails the step with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from reflection_assets.object_tables import (
    ConcurrentWrite,
    read_table,
    storage_options,
    table_uri,
    write_partition,
)
from resources.warehouse_io import bound_partitions


def partition_columns(definition_metadata: Mapping[str, Any]) -> dict[str, str] | str | None:
    """`partition_expr`: one column for a one-dimensional partitioning, dimension -> column for several."""
    return (definition_metadata or {}).get("partition_expr")


def partition_values(expr: dict[str, str] | str, key: str) -> dict[str, str]:
    """The column -> value of one partition key (a multi-partition key names each dimension)."""
    if isinstance(expr, str):
        return {expr: str(key)}
    dimensions = key.keys_by_dimension if isinstance(key, dg.MultiPartitionKey) else {}
    return {column: dimensions[dimension] for dimension, column in expr.items()}


class ObjectTablesIOManager(dg.ConfigurableIOManager):
    """One Delta table per asset under `root` (e.g. s3://reflection/tables), read and written as pandas frames."""

    root: str

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        uri = table_uri(self.root, context.asset_key.path[-1])
        where = None
        with bound_partitions(context):
            expr = partition_columns(context.definition_metadata)
            if context.has_asset_partitions and expr:
                where = partition_values(expr, context.asset_partition_key)
        try:
            version = write_partition(uri, obj, where, storage_options())
        except ConcurrentWrite as error:
            raise dg.Failure(str(error), allow_retries=False) from None
        context.add_output_metadata({"table_uri": dg.MetadataValue.text(uri), "table_version": version})

    def load_input(self, context: dg.InputContext) -> Any:
        upstream = context.upstream_output
        uri = table_uri(self.root, context.asset_key.path[-1])
        where = None
        with bound_partitions(context):
            expr = partition_columns(upstream.definition_metadata if upstream else {})
            if context.has_asset_partitions and expr:
                keys = context.asset_partition_keys
                parts = [partition_values(expr, key) for key in keys]
                columns = [expr] if isinstance(expr, str) else list(expr.values())
                where = {column: sorted({part[column] for part in parts}) for column in columns}
        return read_table(uri, where, storage_options())
