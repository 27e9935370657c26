"""Stable content hashes: row ids and cache keys must not change between runs or machines."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def stable_json(value: Any) -> str:
    """Canonical JSON (sorted keys, no spaces) so equal content always hashes equally."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def content_hash(value: Any, length: int = 20) -> str:
    """Hex sha256 of `value` in canonical JSON, truncated to `length` characters."""
    return hashlib.sha256(stable_json(value).encode("utf-8")).hexdigest()[:length]


def text_hash(text: str) -> str:
    """Full hex sha256 of one text (cache keys use the full digest)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    """Full hex sha256 of a file's bytes, read in chunks (weights and datasets do not fit in memory)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
