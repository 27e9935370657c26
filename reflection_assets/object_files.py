"""Folders of files on the object store (the shared deployment's checkpoints and exports), copied whole.

A folder is uploaded file by file with the names in `last` after everything else, so a reader that sees a
`last` file (a checkpoint's `FINISHED`) sees a complete folder; a download fetches the whole folder into a
local cache. Endpoint and credentials are the asset tables' (`object_tables.storage_options`).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from reflection_assets.object_tables import filesystem


def is_remote(location: str) -> bool:
    """Whether `location` is an object store URI (`s3://...`) rather than a local path."""
    return "://" in str(location) and not str(location).startswith("file://")


def file_exists(uri: str, options: Mapping[str, str]) -> bool:
    from pyarrow import fs

    store, path = filesystem(uri, options)
    return store.get_file_info(path).type == fs.FileType.File


def upload_folder(local: Path, uri: str, options: Mapping[str, str], last: Sequence[str] = ()) -> int:
    """Copy every file under `local` to `uri` (the same relative names), those named in `last` at the end;
    returns how many files were copied."""
    files = sorted(p for p in Path(local).rglob("*") if p.is_file())
    ordered = [p for p in files if p.name not in last] + [p for p in files if p.name in last]
    for path in ordered:
        upload_file(path, f"{uri.rstrip('/')}/{path.relative_to(local).as_posix()}", options)
    return len(ordered)


def upload_file(local: Path, uri: str, options: Mapping[str, str]) -> None:
    from pyarrow import fs

    store, path = filesystem(uri, options)
    fs.copy_files(str(local), path, source_filesystem=fs.LocalFileSystem(), destination_filesystem=store)


def download_folder(uri: str, local: Path, options: Mapping[str, str]) -> Path:
    """The folder at `uri` copied to `local` (through a staging folder beside it, so `local` appears complete or
    not at all); returns `local`."""
    from pyarrow import fs

    store, root = filesystem(uri, options)
    local = Path(local)
    staging = local.with_name(f".{local.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)  # Arrow creates the folders below it, not the top one
    fs.copy_files(root, str(staging), source_filesystem=store, destination_filesystem=fs.LocalFileSystem())
    shutil.rmtree(local, ignore_errors=True)
    staging.rename(local)
    return local
