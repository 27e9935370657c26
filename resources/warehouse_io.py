"""The asset tables' IO manager: dagster-duckdb-pandas, with the instance bound and old tables migrated.

- The arm tables are partitioned by arm x seed, and the seed dimension is dynamic. dagster 1.13's
  DbIOManager resolves a multi-partition key range through the partitions definition, which needs
  the instance's dynamic partitions; it does not bind them itself ("The instance is not available
  to load partitions"). This wrapper binds them with `dg.partition_loading_context`.
- The DuckDB handler appends a partition with `INSERT INTO t SELECT * FROM frame`, by position: a
  table written by an earlier version (a column added, such as `seed`) would refuse every new
  write. Before writing, a table whose columns differ from the frame's is rebuilt with the frame's
  columns, its rows kept (a new column is NULL in them, so their old partitions read as absent).
- The two steps above open the file themselves, before the handler does; they wait for another
  process's lock with the project's one policy (`reflection_assets.database.connect`), as the
  handler waits with its own backoff: parallel runs write the same warehouse.
- For an empty frame the handler deletes the partition's old rows but creates no table, so a
  first output with no rows (an arm skipped for an empty selection) would leave its readers
  failing on a missing table. The table is created from the frame's columns first: they load zero rows.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import dagster as dg
from dagster_duckdb_pandas import DuckDBPandasIOManager

from reflection_assets.database import connect


def _instance_of(context: Any) -> Any:
    instance = getattr(context, "_instance", None)
    if instance is None and getattr(context, "_step_context", None) is not None:
        instance = context._step_context.instance
    return instance


def bound_partitions(context: Any):  # noqa: ANN202 - a context manager
    """The instance's dynamic partitions bound for partition keys resolved within (see the module docstring)."""
    instance = _instance_of(context)
    return dg.partition_loading_context(dynamic_partitions_store=instance) if instance is not None else nullcontext()


def migrate_table(database: str, schema: str, table: str, frame: Any) -> list[str] | None:
    """Rebuild `schema.table` with `frame`'s columns (in its order and types) when they differ.

    Returns the old columns when it rebuilt, else None (no table, or the same columns).
    """
    with connect(database) as conn:
        found = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", [schema, table]
        ).fetchone()[0]
        if not found:
            return None
        old = [row[0] for row in conn.execute(f'DESCRIBE "{schema}"."{table}"').fetchall()]
        conn.register("incoming_frame", frame)
        types = dict((row[0], row[1]) for row in conn.execute("DESCRIBE SELECT * FROM incoming_frame").fetchall())
        conn.unregister("incoming_frame")
        if old == list(types):
            return None
        columns = ", ".join(
            f'CAST("{name}" AS {kind}) AS "{name}"' if name in old else f'CAST(NULL AS {kind}) AS "{name}"'
            for name, kind in types.items()
        )
        conn.execute("BEGIN TRANSACTION")
        conn.execute(f'CREATE TABLE "{schema}"."{table}__migrated" AS SELECT {columns} FROM "{schema}"."{table}"')
        conn.execute(f'DROP TABLE "{schema}"."{table}"')
        conn.execute(f'ALTER TABLE "{schema}"."{table}__migrated" RENAME TO "{table}"')
        conn.execute("COMMIT")
    return old


def create_empty_table(database: str, schema: str, table: str, frame: Any) -> bool:
    """Create `schema.table` with `frame`'s columns and no rows when it does not exist; True when created."""
    with connect(database) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        found = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", [schema, table]
        ).fetchone()[0]
        if found:
            return False
        conn.register("incoming_frame", frame)
        conn.execute(f'CREATE TABLE "{schema}"."{table}" AS SELECT * FROM incoming_frame LIMIT 0')
        conn.unregister("incoming_frame")
    return True


class _InstanceBoundIOManager(dg.IOManager):
    def __init__(self, inner: dg.IOManager, database: str, schema: str) -> None:
        self.inner, self.database, self.schema = inner, database, schema

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        import pandas as pd

        if isinstance(obj, pd.DataFrame) and len(obj.columns) and context.has_asset_key:
            table = context.asset_key.path[-1]
            if obj.empty:
                create_empty_table(self.database, self.schema, table, obj)
            old = migrate_table(self.database, self.schema, table, obj)
            if old is not None:
                context.log.warning(
                    f"warehouse table {table} had the columns of an earlier version ({len(old)}); rebuilt with "
                    f"this version's {len(obj.columns)}, its rows kept"
                )
        with bound_partitions(context):
            self.inner.handle_output(context, obj)

    def load_input(self, context: dg.InputContext) -> Any:
        with bound_partitions(context):
            return self.inner.load_input(context)


class WarehouseIOManager(DuckDBPandasIOManager):
    """DuckDBPandasIOManager (one table per asset in the warehouse) that works with dynamic partition dimensions."""

    def create_io_manager(self, context) -> dg.IOManager:  # noqa: ANN001 - Dagster's InitResourceContext
        return _InstanceBoundIOManager(super().create_io_manager(context), self.database, self.schema_ or "main")
