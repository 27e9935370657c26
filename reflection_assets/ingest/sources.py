"""Containers -> raw records: one RawRecord per row, in file order, before any field checks.

Each reader counts rows the way users find them again: JSONL and CSV by 1-based physical line
(header = line 1; blank lines are not rows), JSON arrays by 0-based element index, Parquet and
hub datasets by 0-based row index. Problems confined to one row come back as a RawRecord with a
`problem`; problems that spoil the whole file raise DatasetReadError.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reflection_assets.ingest.errors import DatasetReadError
from reflection_assets.ingest.fields import describe_type, has_surrogates, printable_text
from reflection_assets.ingest.reasons import BAD_UTF8, INVALID_JSON, NUL_BYTE, RowRejected

UTF8_BOM = b"\xef\xbb\xbf"
# Bytes JSON treats as whitespace (a line holding only these is blank, not a row).
_JSON_BLANK = b" \t\r"


@dataclass(frozen=True)
class RawRecord:
    """One row as read: its place, its raw text, and either a parsed value or the problem."""

    source_row: int
    unit: str  # "line" | "element" | "row": how source_row counts, for messages
    raw_text: str
    value: Any = None
    problem: RowRejected | None = None

    @property
    def location(self) -> str:
        return f"{self.unit} {self.source_row}"


def strip_bom(data: bytes) -> bytes:
    """Editors on Windows prepend a BOM; it is not part of the first row."""
    return data[len(UTF8_BOM) :] if data.startswith(UTF8_BOM) else data


# --- JSON and JSONL -------------------------------------------------------------------------


def json_records(path: Path, data: bytes) -> list[RawRecord]:
    """A JSON array of rows, or JSON Lines. Raises for a file that is one non-array JSON value."""
    data = strip_bom(data)
    if not data.strip():
        raise DatasetReadError(path, "", "the file is empty")
    if data.lstrip()[:1] == b"[":
        return json_array_records(path, data.decode("utf-8", "surrogateescape"))
    whole = _parse_whole(data)
    if whole is not _NOT_JSON:
        blank_or_one_line = sum(1 for line in data.split(b"\n") if line.strip(_JSON_BLANK)) <= 1
        if not isinstance(whole, dict):
            raise DatasetReadError(path, "", f"the file is {describe_type(whole)}, not a dataset (expected rows)")
        if not blank_or_one_line:
            raise DatasetReadError(
                path, "", "the file is one JSON object, not a dataset (expected a JSON array or one object per line)"
            )
    return list(jsonl_records(data))


_NOT_JSON = object()


def _parse_whole(data: bytes) -> Any:
    """The file parsed as one JSON value, or _NOT_JSON (the normal case for JSONL: fails fast
    at the second line)."""
    try:
        return json.loads(data.decode("utf-8", "surrogateescape"))
    except (ValueError, RecursionError):
        return _NOT_JSON


def json_array_records(path: Path, text: str) -> list[RawRecord]:
    """Elements of a top-level array. A malformed array cannot be split into rows, so it raises
    with the line and column where parsing stopped."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        # An unterminated string runs to the end of the file; other errors at the very end too.
        ended_early = err.msg.startswith("Unterminated string") or err.pos >= len(text.rstrip())
        message = "JSON array ends early (truncated?)" if ended_early else f"invalid JSON: {err.msg}"
        raise DatasetReadError(path, f"line {err.lineno}, column {err.colno}", message) from None
    except (ValueError, RecursionError) as err:  # integer too long, nesting too deep
        raise DatasetReadError(path, "", f"invalid JSON: {err}") from None
    if not isinstance(value, list):  # "[1] 2" cannot get here: json.loads rejects trailing data
        raise DatasetReadError(path, "", f"the file is {describe_type(value)}, not a dataset")
    records = []
    for index, element in enumerate(value):
        raw = json.dumps(element, ensure_ascii=False)
        problem = None
        if has_surrogates(raw):  # undecodable bytes somewhere in this element
            problem = RowRejected(BAD_UTF8, f"element {index} holds bytes that are not valid UTF-8")
        records.append(RawRecord(index, "element", printable_text(raw), value=element, problem=problem))
    return records


def jsonl_records(data: bytes) -> Iterator[RawRecord]:
    """One JSON value per line; every non-blank line is a row, whatever is wrong with it."""
    for number, line in enumerate(data.split(b"\n"), start=1):
        line = line.removesuffix(b"\r")
        if not line.strip(_JSON_BLANK):
            continue
        yield jsonl_record(number, line)


def jsonl_record(number: int, line: bytes) -> RawRecord:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        problem = RowRejected(BAD_UTF8, f"byte {err.start + 1} of the line is not valid UTF-8")
        return RawRecord(number, "line", line.decode("utf-8", "replace"), problem=problem)
    if "\x00" in text:
        return RawRecord(number, "line", text, problem=RowRejected(NUL_BYTE, "the line contains a raw NUL byte"))
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        problem = RowRejected(INVALID_JSON, f"column {err.colno}: {err.msg}")
        return RawRecord(number, "line", text, problem=problem)
    except (ValueError, RecursionError) as err:  # integer too long, nesting too deep
        return RawRecord(number, "line", text, problem=RowRejected(INVALID_JSON, str(err) or type(err).__name__))
    return RawRecord(number, "line", text, value=value)


# --- CSV --------------------------------------------------------------------------------------


class _LineTap:
    """Feeds lines to csv.reader and remembers them, so each record keeps its raw text and the
    line it started on (a quoted field may span lines)."""

    def __init__(self, text: str) -> None:
        self._lines = iter(io.StringIO(text, newline=""))
        self.taken: list[str] = []
        self.count = 0

    def __iter__(self) -> _LineTap:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.taken.append(line)
        self.count += 1
        return line

    def take(self) -> str:
        text, self.taken = "".join(self.taken), []
        return text


def csv_records(path: Path, data: bytes, delimiter: str = ",") -> tuple[list[str], list[RawRecord]]:
    """(header, records). Each record value is {column: text}; short rows simply lack columns."""
    text = strip_bom(data).decode("utf-8", "surrogateescape")
    tap = _LineTap(text)
    reader = csv.reader(tap, delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None:
            raise DatasetReadError(path, "", "the file is empty")
        tap.take()
        records = []
        for row in reader:
            start = tap.count - len(tap.taken) + 1
            raw = tap.take().rstrip("\r\n")
            if not row:
                continue  # a blank line is not a row (a line of bare separators is, with empty fields)
            problem = None
            if has_surrogates(raw):
                problem = RowRejected(BAD_UTF8, "the line holds bytes that are not valid UTF-8")
            records.append(RawRecord(start, "line", printable_text(raw), value=dict(zip(header, row)), problem=problem))
    except csv.Error as err:
        raise DatasetReadError(path, f"line {reader.line_num}", f"unreadable CSV: {err}") from None
    return header, records


# --- Parquet and the Hugging Face hub ---------------------------------------------------------


def parquet_records(path: Path) -> tuple[list[str], list[RawRecord]]:
    """(columns, records) of a Parquet file, read with pyarrow."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise DatasetReadError(path, "", f"not a readable Parquet file ({err})") from None
    return table.column_names, [_row_record(i, row) for i, row in enumerate(table.to_pylist())]


def hub_records(name: str, split: str) -> tuple[list[str], list[RawRecord]]:
    """(columns, records) of a Hugging Face dataset split; needs the hub (or its local cache)."""
    try:
        import datasets
    except ImportError:
        raise DatasetReadError(name, "", "reading from the Hugging Face hub needs the 'datasets' package") from None
    try:
        with _quiet_loggers("huggingface_hub", "datasets", "fsspec"):
            dataset = datasets.load_dataset(name, split=split)
    # The hub client raises many unrelated types (offline, HTTP, auth, missing repo or split,
    # bad config); to a user they all mean "this name cannot be read", so all become one line.
    except Exception as err:  # noqa: BLE001
        reason = " ".join(str(err).split()) or type(err).__name__
        raise DatasetReadError(name, f"Hugging Face hub, split {split!r}", f"cannot load dataset: {reason}") from None
    return list(dataset.column_names), [_row_record(i, row) for i, row in enumerate(dataset)]


@contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """Offline, the hub client logs every retry; the caller gets one clear error instead."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _row_record(index: int, row: dict[str, Any]) -> RawRecord:
    raw = json.dumps(row, ensure_ascii=False, default=str)
    return RawRecord(index, "row", printable_text(raw), value=row)
