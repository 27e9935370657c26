"""The asset tables' IO manager: dagster-duckdb-pandas, with the instance bound while it reads or writes.

The arm tables are partitioned by arm x seed, and the seed dimension is dynamic. dagster 1.13's
DbIOManager resolves a multi-partition key range through the partitions definition, which needs
the instance's dynamic partitions; it does not bind them itself ("The instance is not available
to load partitions"). This wrapper binds them with `dg.partition_loading_context`; nothing else changes.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import dagster as dg
from dagster_duckdb_pandas import DuckDBPandasIOManager


def _instance_of(context: Any) -> Any:
    instance = getattr(context, "_instance", None)
    if instance is None and getattr(context, "_step_context", None) is not None:
        instance = context._step_context.instance
    return instance


def _bound(context: Any):  # noqa: ANN202 - a context manager
    instance = _instance_of(context)
    return dg.partition_loading_context(dynamic_partitions_store=instance) if instance is not None else nullcontext()


class _InstanceBoundIOManager(dg.IOManager):
    def __init__(self, inner: dg.IOManager) -> None:
        self.inner = inner

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        with _bound(context):
            self.inner.handle_output(context, obj)

    def load_input(self, context: dg.InputContext) -> Any:
        with _bound(context):
            return self.inner.load_input(context)


class WarehouseIOManager(DuckDBPandasIOManager):
    """DuckDBPandasIOManager (one table per asset in the warehouse) that works with dynamic partition dimensions."""

    def create_io_manager(self, context) -> dg.IOManager:  # noqa: ANN001 - Dagster's InitResourceContext
        return _InstanceBoundIOManager(super().create_io_manager(context))
