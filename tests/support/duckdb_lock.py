"""Another process holding a DuckDB file, for the lock-wait tests."""

from __future__ import annotations

import time
from typing import Any


def hold_lock(path: str, seconds: float, ready: Any) -> None:
    """Open `path` (taking its lock), signal `ready`, keep it for `seconds` (run in a spawned process)."""
    import duckdb

    connection = duckdb.connect(path)
    ready.set()
    time.sleep(seconds)
    connection.close()
