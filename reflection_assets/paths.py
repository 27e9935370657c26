"""Where runtime state lives. Everything defaults to `data/` under the working directory."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """Root of runtime state (`REFLECTION_DATA_DIR`, default `./data`)."""
    return Path(os.environ.get("REFLECTION_DATA_DIR", "data")).resolve()


def shown_path(path: str | Path) -> str:
    """`path` as metadata shows it: relative to the working directory when under it (no machine's
    checkout path in the UI), else as given."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def models_dir() -> Path:
    """De-quantized model cache (`REFLECTION_MODELS_DIR`, default `data/models`)."""
    return Path(os.environ.get("REFLECTION_MODELS_DIR", str(data_dir() / "models"))).resolve()


def warehouse_path() -> Path:
    return Path(os.environ.get("REFLECTION_WAREHOUSE", str(data_dir() / "warehouse.duckdb"))).resolve()


def checkpoints_dir() -> Path:
    return data_dir() / "checkpoints"


def scratch_dir() -> Path:
    """A shared deployment's only local state: training runs in progress, fetched adapters, exports being
    written (`data/scratch`; safe to delete between runs)."""
    return data_dir() / "scratch"


def exports_dir() -> Path:
    return data_dir() / "exports"


def inbox_dir() -> Path:
    return Path(os.environ.get("REFLECTION_INBOX", str(data_dir() / "inbox"))).resolve()
