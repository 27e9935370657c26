"""Asset tables as Delta Lake tables on an object store: one table per asset under a root URI, one partition
per write.

The shared deployment (`REFLECTION_STORAGE=shared`, reflection_assets.defs.deployment) keeps its asset tables
here instead of the DuckDB file, so every machine reads and writes the same tables, and a user's other tools
(Spark, Polars, DuckDB, Trino) read them as they are. A commit is atomic through the store's conditional writes
(`conditional_put=etag`: S3 and the S3-compatible stores): two writers of different partitions both land; two
writers of the same partition cannot both win, the later commit fails (`ConcurrentWrite`) and nothing of it is
written. DuckDB reads the tables through Arrow datasets (`arrow_dataset`): its own `httpfs` extension is not
needed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Arrow and Delta are imported where a table is touched: the code location loads without them
    import pandas as pd
    import pyarrow as pa

TABLES_URI_ENV = "REFLECTION_TABLES_URI"  # e.g. s3://reflection/tables
S3_ENDPOINT_ENV = "REFLECTION_S3_ENDPOINT_URL"  # an S3-compatible store's URL; unset: AWS S3
# Read by the object store client when set; passed on explicitly so every table call sees the same ones.
AWS_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION")


class ConcurrentWrite(RuntimeError):
    """Another writer committed to the same partition of the table while this one wrote; this write is not in it."""


def storage_options() -> dict[str, str]:
    """The object store client's options, from the environment (credentials never leave this dict)."""
    options = {"conditional_put": "etag"}
    endpoint = os.environ.get(S3_ENDPOINT_ENV, "").strip()
    if endpoint:
        options["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    options.update({name: os.environ[name] for name in AWS_VARIABLES if os.environ.get(name)})
    return options


def table_uri(root: str, table: str) -> str:
    return f"{root.rstrip('/')}/{table}"


def as_arrow(frame: pd.DataFrame) -> pa.Table:
    """`frame` as an Arrow table Delta accepts: no index column, and a column with no values (Arrow's null type,
    which Delta cannot store) as text."""
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    for index, field in enumerate(table.schema):
        if pa.types.is_null(field.type):
            table = table.set_column(index, pa.field(field.name, pa.string()), table.column(index).cast(pa.string()))
    return table


def is_integer(schema: pa.Schema, column: str) -> bool:
    """Whether a partition column holds integers (its keys, always text, are then written and compared as numbers)."""
    import pyarrow as pa

    return pa.types.is_integer(schema.field(column).type)


def predicate(where: Mapping[str, str], schema: pa.Schema) -> str:
    """A Delta predicate selecting one partition (text values quoted, integers as they are)."""
    clauses = []
    for column, value in where.items():
        text = str(value).replace("'", "''")
        clauses.append(f"{column} = {value}" if is_integer(schema, column) else f"{column} = '{text}'")
    return " AND ".join(clauses)


def exists(uri: str, options: Mapping[str, str]) -> bool:
    from deltalake import DeltaTable

    return DeltaTable.is_deltatable(uri, storage_options=dict(options))


def write_partition(uri: str, frame: pd.DataFrame, where: Mapping[str, str] | None, options: Mapping[str, str]) -> int:
    """Replace one partition of the table at `uri` (`where`: partition column -> value), or the whole table
    (`where` None) with `frame`; returns the table's version read right after the commit (another writer's may
    already follow it). A new column joins the table's schema."""
    from deltalake import DeltaTable, write_deltalake
    from deltalake.exceptions import CommitFailedError

    data, options = as_arrow(frame), dict(options)
    partition_by = list(where) if where else None
    try:
        if not exists(uri, options):
            write_deltalake(uri, data, mode="append", partition_by=partition_by, storage_options=options)
        elif where:
            write_deltalake(uri, data, mode="overwrite", predicate=predicate(where, data.schema),
                            partition_by=partition_by, schema_mode="merge", storage_options=options)
        else:
            write_deltalake(uri, data, mode="overwrite", schema_mode="overwrite", storage_options=options)
    except CommitFailedError as error:
        part = ", ".join(f"{k}={v}" for k, v in (where or {}).items()) or "the whole table"
        raise ConcurrentWrite(
            f"{uri} ({part}): another run committed to it while this one wrote, so this run's rows were not "
            f"written; the table holds the other run's. Re-run to replace them ({error})"
        ) from error
    return DeltaTable(uri, storage_options=options).version()


def read_table(uri: str, where: Mapping[str, Sequence[str]] | None, options: Mapping[str, str]) -> pd.DataFrame:
    """The table's rows (only the partitions in `where`: column -> values, when given; none for an empty one)."""
    import pyarrow as pa
    from deltalake import DeltaTable

    table = DeltaTable(uri, storage_options=dict(options))
    if where is None:
        return table.to_pandas()
    schema = pa.schema(table.schema().to_arrow())
    if not where or not all(where.values()):  # no partition asked for: no rows, the table's columns
        return schema.empty_table().to_pandas()
    return table.to_pandas(filters=[(column, "in", coerce(values, schema, column)) for column, values in where.items()])


def coerce(values: Sequence[str], schema: pa.Schema, column: str) -> list:
    """Partition keys (text) as the column's type, for a filter."""
    return [int(v) for v in values] if is_integer(schema, column) else [str(v) for v in values]


def arrow_dataset(uri: str, options: Mapping[str, str]):
    """The table as an Arrow dataset (DuckDB queries it by name once registered on a connection)."""
    from deltalake import DeltaTable

    return DeltaTable(uri, storage_options=dict(options)).to_pyarrow_dataset()


def filesystem(root: str, options: Mapping[str, str]):
    """An Arrow filesystem over `root` with the same endpoint and credentials as the table calls, and the path
    inside it (`s3://bucket/tables` -> `bucket/tables`)."""
    from pyarrow import fs

    if not root.startswith("s3://"):
        return fs.FileSystem.from_uri(root)
    endpoint = options.get("AWS_ENDPOINT_URL", "")
    return (
        fs.S3FileSystem(
            access_key=options.get("AWS_ACCESS_KEY_ID"), secret_key=options.get("AWS_SECRET_ACCESS_KEY"),
            session_token=options.get("AWS_SESSION_TOKEN"), region=options.get("AWS_REGION"),
            endpoint_override=endpoint.split("://", 1)[-1] or None,
            scheme="http" if endpoint.startswith("http://") else "https",
        ),
        root[len("s3://"):].rstrip("/"),
    )


def list_tables(root: str, options: Mapping[str, str]) -> list[str]:
    """The tables under `root` (folders holding a Delta log), by name."""
    from pyarrow import fs

    store, path = filesystem(root, options)
    found = store.get_file_info(fs.FileSelector(path, allow_not_found=True))
    folders = [info.base_name for info in found if info.type == fs.FileType.Directory]
    logs = store.get_file_info([f"{path}/{name}/_delta_log" for name in folders])
    return sorted(name for name, log in zip(folders, logs, strict=True) if log.type == fs.FileType.Directory)


def sql_connection(root: str, options: Mapping[str, str], extra: Mapping[str, pd.DataFrame] | None = None):
    """An in-memory DuckDB connection where every table under `root` (and each frame of `extra`) is queried by its
    name, so the project's SQL (lineage, report) runs over the shared tables as over the local file."""
    import duckdb

    connection = duckdb.connect()
    for name in list_tables(root, options):
        connection.register(name, arrow_dataset(table_uri(root, name), options))
    for name, frame in (extra or {}).items():
        connection.register(name, frame)
    return connection
