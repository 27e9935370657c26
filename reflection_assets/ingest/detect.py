"""Format detection: which container (JSON, CSV, Parquet, hub) and which record shape.

Containers are told by extension (and Parquet's magic bytes); record shapes by the first row
object's keys: `conversations` -> sharegpt, `messages` -> messages, the (mapped) instruction or
output field -> alpaca.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

from reflection_assets.ingest.records import RecordFormat

ContainerFormat = Literal["csv", "parquet", "hf"]
CONTAINER_FORMATS: tuple[str, ...] = get_args(ContainerFormat)
DatasetFormat = Literal["auto", RecordFormat, ContainerFormat]  # what `read_dataset(format=...)` accepts
FORMATS: tuple[str, ...] = get_args(DatasetFormat)

JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
CSV_DELIMITERS = {".csv": ",", ".tsv": "\t"}
PARQUET_SUFFIXES = (".parquet", ".pq")
SUPPORTED_SUFFIXES = (*JSON_SUFFIXES, *CSV_DELIMITERS, *PARQUET_SUFFIXES)

PARQUET_MAGIC = b"PAR1"
# Files people drop into an inbox by mistake; naming them beats "invalid JSON on line 1".
_MAGIC_NAMES = (
    (b"\x1f\x8b", "a gzip-compressed file (decompress it first)"),
    (b"PK\x03\x04", "a zip archive (extract it first)"),
    (b"\x89PNG", "a PNG image"),
    (b"%PDF", "a PDF document"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"SQLite format 3\x00", "an SQLite database"),
)
# Share of undecodable or control characters above which a file is not text. A text dataset
# with a few bad lines stays far below it; random or compressed bytes are far above.
BINARY_SHARE = 0.10
SNIFF_BYTES = 8192


def container_of(path: Path, fmt: str, head: bytes) -> str:
    """"json", "csv" or "parquet": explicit csv/parquet win, else extension, else magic bytes.

    A JSON extension wins over the bytes: a `.jsonl` file whose first line happens to start with
    "PAR1" is still read line by line (its rows rejected with reasons), never as Parquet.
    """
    if fmt in ("csv", "parquet"):
        return fmt
    suffix = path.suffix.lower()
    if suffix in CSV_DELIMITERS:
        return "csv"
    if suffix in PARQUET_SUFFIXES or (suffix not in JSON_SUFFIXES and head.startswith(PARQUET_MAGIC)):
        return "parquet"
    return "json"


def csv_delimiter(path: Path) -> str:
    return CSV_DELIMITERS.get(path.suffix.lower(), ",")


def binary_kind(head: bytes) -> str | None:
    """What a non-text file is ("a PNG image", "binary data"), or None when it looks like text."""
    for magic, name in _MAGIC_NAMES:
        if head.startswith(magic):
            return name
    if head.startswith(PARQUET_MAGIC):
        return "a Parquet file (use --format parquet or a .parquet name)"
    text = head.decode("utf-8", "replace")
    if not text:
        return None
    odd = sum(1 for ch in text if ch == "\ufffd" or (ord(ch) < 32 and ch not in "\t\n\r\f\v\b"))
    return "binary data, not text" if odd / len(text) > BINARY_SHARE else None


def record_format_of(record: Mapping[str, Any], columns: Mapping[str, str]) -> str | None:
    """The record shape of one row object, or None when its keys fit no shape we read."""
    if "conversations" in record:
        return "sharegpt"
    if "messages" in record:
        return "messages"
    if columns["instruction"] in record or columns["output"] in record:
        return "alpaca"
    return None


def shape_hint(columns: Mapping[str, str]) -> str:
    return (
        f"expected {columns['instruction']!r}/{columns['output']!r} (alpaca), "
        "'conversations' (sharegpt) or 'messages' (chat messages)"
    )


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]*[A-Za-z0-9]")


def looks_like_hub_id(source: str) -> bool:
    """"owner/name" and not a file name we would read: only then may `auto` try the hub."""
    return bool(_HUB_ID.fullmatch(source)) and Path(source).suffix.lower() not in SUPPORTED_SUFFIXES
