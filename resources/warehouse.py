"""The warehouse resource: where the project's SQL reads the asset tables, where the caches and registries live,
and where checkpoints and exports go.

Local (the default): one DuckDB file holds both, opened for short connections (`reflection_assets.database`).
Shared (`REFLECTION_STORAGE=shared`, deploy/README.md): the asset tables are Delta tables under `tables_uri`
(queried through an in-memory DuckDB connection, `object_tables.sql_connection`), and the caches and registries
are tables of the Postgres database at `store_url`, written by every node at once; checkpoints and exports are
written in the node's scratch and published under `files_uri`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
from pydantic import Field

from reflection_assets import object_tables
from reflection_assets.database import connect, exists, shown_location, table_exists
from reflection_assets.ingest.registry import REGISTRY_TABLE
from reflection_assets.object_files import upload_folder
from reflection_assets.paths import checkpoints_dir, exports_dir, scratch_dir, warehouse_path
from reflection_assets.postgres import advisory_lock, is_postgres
from reflection_assets.storage import storage_from_env
from reflection_assets.training.lineage import TRAINED_ROWS_TABLE
from reflection_assets.training.shared_checkpoints import CheckpointMirror, local_adapter

# The registries the project's SQL joins with asset tables (lineage: trained_rows; the report: dataset_sources).
# On the shared stores they are read from Postgres into the connection when it opens (they are small).
REGISTRIES_IN_SQL = (TRAINED_ROWS_TABLE, REGISTRY_TABLE)


class Warehouse(dg.ConfigurableResource):
    """The asset tables as SQL (`connection`, `query`) and the caches' location (`store`)."""

    database: str = Field(description="The local DuckDB file: asset tables and caches (shared: unused).")
    store_url: str = Field(
        default="",
        description="Shared: the Postgres database of the caches and registries (REFLECTION_STORE_URL). "
        "Empty: the DuckDB file.",
    )
    tables_uri: str = Field(
        default="",
        description="Shared: the root of the Delta asset tables (REFLECTION_TABLES_URI). Empty: the DuckDB file.",
    )
    files_uri: str = Field(
        default="",
        description="Shared: the root of the checkpoints and exports on the object store (REFLECTION_FILES_URI). "
        "Empty: data/checkpoints and data/exports.",
    )

    @classmethod
    def from_env(cls) -> Warehouse:
        """The warehouse the environment describes (REFLECTION_STORAGE and its locations), for the CLI."""
        storage = storage_from_env()
        return cls(database=str(warehouse_path()), tables_uri=storage.tables_uri, store_url=storage.store_url,
                   files_uri=storage.files_uri)

    @property
    def store(self) -> str:
        """Where the caches (llm_calls, student_scores, eval_outputs, signatures) and registries live."""
        return self.store_url or self.database

    def checkpoints_root(self) -> Path:
        """Where adapters are trained: data/checkpoints, or the node's scratch when they are published."""
        return scratch_dir() / "checkpoints" if self.files_uri else checkpoints_dir()

    def checkpoint_mirror(self) -> CheckpointMirror | None:
        """The object store's copy of the checkpoints, with a lease per key in the Postgres store (shared only)."""
        if not self.files_uri:
            return None
        store = self.store

        def lease(name: str, on_wait: Callable[[], None]) -> AbstractContextManager[None]:
            return advisory_lock(store, name, on_wait) if is_postgres(store) else contextlib.nullcontext()

        return CheckpointMirror(f"{self.files_uri.rstrip('/')}/checkpoints", object_tables.storage_options(), lease)

    def local_adapter(self, adapter_path: str) -> str:
        """A local folder with the adapter a `lora_checkpoint` row names (fetched once into scratch when a URI)."""
        return local_adapter(adapter_path, scratch_dir() / "adapters", object_tables.storage_options())

    def exports_folder(self, relative: str) -> Path:
        """Where an export is written: data/exports/<relative>, or the node's scratch when it is published."""
        return (scratch_dir() / "exports" if self.files_uri else exports_dir()) / relative

    def exports_location(self) -> str:
        """Where the exports are, for the console: data/exports, or their root on the object store."""
        return f"{self.files_uri.rstrip('/')}/exports" if self.files_uri else str(exports_dir())

    def export_location(self, folder: Path) -> str:
        """Where readers find the export written in `folder` (an `exports_folder`): the folder, or its URI."""
        if not self.files_uri:
            return str(folder)
        return f"{self.exports_location()}/{Path(folder).relative_to(self.exports_folder('')).as_posix()}"

    def publish_export(self, folder: Path) -> str:
        """Upload the export written in `folder` (shared stores; locally it stays where it is); its location."""
        location = self.export_location(folder)
        if self.files_uri:
            upload_folder(folder, location, object_tables.storage_options())
        return location

    def describe(self) -> str:
        """Where the tables and the caches are, for the console and metadata (no password)."""
        if not self.tables_uri:
            return shown_location(self.database)
        return f"tables {self.tables_uri}, caches {shown_location(self.store)}"

    @contextlib.contextmanager
    def connection(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A DuckDB connection where every asset table (and each registry) is queried by its name.

        Local: the file itself (an empty in-memory database when reading a file not written yet). Shared: an
        in-memory database over the Delta tables and the registries, for reading.
        """
        if self.tables_uri:
            if not read_only:  # a write here would land in memory and vanish: the tables are the IO manager's
                raise ValueError("the shared asset tables are read-only here; write them through the IO manager")
            connection = object_tables.sql_connection(
                self.tables_uri, object_tables.storage_options(), self.registries()
            )
            try:
                yield connection
            finally:
                connection.close()
            return
        if read_only and not exists(self.database):
            with contextlib.closing(duckdb.connect()) as empty:
                yield empty
            return
        with connect(self.database, read_only=read_only) as connection:
            yield connection

    def registries(self) -> dict[str, pd.DataFrame]:
        """The registries of the store that exist, as frames."""
        frames: dict[str, pd.DataFrame] = {}
        if not exists(self.store):
            return frames
        with connect(self.store) as store:
            for table in REGISTRIES_IN_SQL:
                if table_exists(store, table):
                    frames[table] = store.execute(f"SELECT * FROM {table}").df()
        return frames

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        """Run one read query; returns an empty frame when there is nothing to read yet."""
        if not self.tables_uri and not exists(self.database):
            return pd.DataFrame()
        with self.connection(read_only=True) as conn:
            return conn.execute(sql, params or []).df()
