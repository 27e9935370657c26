"""Where a deployment keeps its state: the one switch between the local stores and the shared ones.

`local` (the default): the asset tables, caches and registries in one DuckDB file on this machine.
`shared` (deploy/README.md): the asset tables as Delta tables under REFLECTION_TABLES_URI on an object store,
the caches and registries in the Postgres database at REFLECTION_STORE_URL, the checkpoints and exports under
REFLECTION_FILES_URI, so every node reads and writes the same ones and keeps only scratch on its disk.
The definitions, the sensors and the CLI all read the switch here, so they agree on it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from reflection_assets.object_tables import TABLES_URI_ENV
from reflection_assets.paths import warehouse_path
from reflection_assets.postgres import is_postgres

STORAGE_ENV = "REFLECTION_STORAGE"
STORE_URL_ENV = "REFLECTION_STORE_URL"  # postgresql://user@host:port/db (the password in PGPASSWORD)
FILES_URI_ENV = "REFLECTION_FILES_URI"  # s3://bucket/files: checkpoints/ and exports/ under it
STORAGES = ("local", "shared")


class StorageSettingError(ValueError):
    """The storage variables do not describe a deployment (the message names the variable)."""


@dataclass(frozen=True)
class Storage:
    kind: str  # one of STORAGES
    tables_uri: str = ""  # shared: the Delta tables' root
    store_url: str = ""  # shared: the caches' and registries' Postgres database
    files_uri: str = ""  # shared: the root of the checkpoints and exports on the object store

    @property
    def shared(self) -> bool:
        return self.kind == "shared"

    def store(self) -> str | Path:
        """Where the caches and registries live: the Postgres database (shared) or the warehouse file."""
        return self.store_url if self.shared else warehouse_path()


def storage_from_env(env: Mapping[str, str] | None = None) -> Storage:
    """The storage the environment chooses; a bad value or a missing location is an error naming the variable."""
    env = os.environ if env is None else env
    kind = env.get(STORAGE_ENV, "").strip() or STORAGES[0]
    if kind not in STORAGES:
        raise StorageSettingError(f"{STORAGE_ENV}={kind!r}: expected one of {', '.join(STORAGES)}")
    if kind == "local":
        return Storage(kind)
    tables_uri, store_url = env.get(TABLES_URI_ENV, "").strip(), env.get(STORE_URL_ENV, "").strip()
    if not tables_uri:
        raise StorageSettingError(f"{STORAGE_ENV}=shared needs {TABLES_URI_ENV}, the tables' root (e.g. s3://bucket/tables)")
    if not is_postgres(store_url):
        raise StorageSettingError(
            f"{STORAGE_ENV}=shared needs {STORE_URL_ENV}, the Postgres database of the caches and registries "
            "(e.g. postgresql://reflection@db:5432/reflection; the password in PGPASSWORD)"
        )
    files_uri = env.get(FILES_URI_ENV, "").strip()
    if "://" not in files_uri:
        raise StorageSettingError(
            f"{STORAGE_ENV}=shared needs {FILES_URI_ENV}, the checkpoints' and exports' root (e.g. s3://bucket/files)"
        )
    return Storage(kind, tables_uri, store_url, files_uri)
