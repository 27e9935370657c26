"""read_dataset: any supported source -> accepted Pairs plus rejected rows, nothing lost.

A source is
- a file: a JSON array or JSON Lines of alpaca / sharegpt / messages rows, a CSV (or .tsv), or a
  Parquet file (flat columns through `column_map`, or a `conversations` / `messages` column);
- a folder: every supported file directly inside it (.json .jsonl .ndjson .csv .tsv .parquet
  .pq; no recursion; names starting with "." skipped), read in sorted name order, each file
  detected on its own, duplicates found across files. One unreadable file fails the whole
  folder, so a partition never silently misses part of its data;
- a Hugging Face dataset name ("owner/name"), through `datasets.load_dataset`: with
  format="hf", or with "auto" when no such local path exists.

Every row read ends up either accepted or rejected with a reason (rows_read == accepted +
rejected, always); only whole-source failures raise DatasetReadError. Row ids are content
hashes, so the first copy of a duplicate is kept and later copies are rejected. Given a
NearDuplicateIndex, rows that nearly repeat a kept row (or a row the index started with) are
rejected too, as near_duplicate, naming the row they repeat.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from reflection_assets.ingest.columns import REQUIRED_FIELDS, resolve_column_map
from reflection_assets.ingest.detect import (
    FORMATS,
    SNIFF_BYTES,
    SUPPORTED_SUFFIXES,
    binary_kind,
    container_of,
    csv_delimiter,
    looks_like_hub_id,
    record_format_of,
    shape_hint,
)
from reflection_assets.ingest.errors import DatasetReadError
from reflection_assets.ingest.near_duplicates import NearDuplicateIndex, dedup_text
from reflection_assets.ingest.reasons import DUPLICATE, NEAR_DUPLICATE, REASONS, RowRejected
from reflection_assets.ingest.records import RECORD_FORMATS, record_to_pair
from reflection_assets.ingest.sources import (
    RawRecord,
    csv_records,
    hub_records,
    json_records,
    parquet_records,
)
from reflection_assets.schema import PARTITION_COLUMN, RAW_COLUMNS, REJECTED_COLUMNS, Pair

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class RejectedRow:
    source_file: str
    source_row: int
    reason: str  # one of reasons.REASONS
    detail: str
    raw_text: str  # as read; bad UTF-8 decoded with errors="replace"
    location: str = ""  # "line 12" / "element 3" / "row 7": how to find it again


@dataclass(frozen=True)
class Provenance:
    """Where one accepted pair came from (parallel to ReadResult.accepted)."""

    source_file: str
    source_row: int
    format: str  # alpaca | sharegpt | messages | csv | parquet | hf


@dataclass
class ReadResult:
    accepted: list[Pair]
    provenance: list[Provenance]
    rejected: list[RejectedRow]
    format: str  # the detected format, "mixed" for a folder of several
    rows_read: int
    files: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Downstream row accounting relies on this; a result that breaks it must not exist.
        if len(self.provenance) != len(self.accepted):
            raise ValueError("provenance must run parallel to accepted")
        if self.rows_read != len(self.accepted) + len(self.rejected):
            raise ValueError(
                f"rows_read {self.rows_read} != accepted {len(self.accepted)} + rejected {len(self.rejected)}"
            )

    def counts(self) -> dict[str, int]:
        """Rows read, accepted and rejected (the first is the sum of the others)."""
        return {"rows_read": self.rows_read, "accepted": len(self.accepted), "rejected": len(self.rejected)}

    def reason_counts(self) -> dict[str, int]:
        """Rejections per reason, in REASONS order, reasons that occurred only."""
        counts = Counter(row.reason for row in self.rejected)
        return {reason: counts[reason] for reason in REASONS if counts[reason]}

    def accepted_frame(self, dataset: str) -> pd.DataFrame:
        """The accepted rows with exactly schema.RAW_COLUMNS (history as a JSON string)."""
        rows = [
            {
                PARTITION_COLUMN: dataset,
                "row_id": pair.row_id,
                "source_file": where.source_file,
                "source_row": where.source_row,
                "format": where.format,
                "system": pair.system,
                "history": pair.history_json(),
                "instruction": pair.instruction,
                "input": pair.input,
                "output": pair.output,
            }
            for pair, where in zip(self.accepted, self.provenance)
        ]
        return _frame(rows, RAW_COLUMNS)

    def rejected_frame(self, dataset: str) -> pd.DataFrame:
        """The rejected rows with exactly schema.REJECTED_COLUMNS."""
        rows = [
            {
                PARTITION_COLUMN: dataset,
                "source_file": row.source_file,
                "source_row": row.source_row,
                "reason": row.reason,
                "detail": row.detail,
                "raw_text": row.raw_text,
            }
            for row in self.rejected
        ]
        return _frame(rows, REJECTED_COLUMNS)


def _frame(rows: list[dict[str, object]], columns: list[str]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=columns)
    # Keep dtypes fixed even when there are no rows: an empty object column reads as INTEGER to DuckDB,
    # so a first empty table would refuse every later partition's text; an empty one is "string".
    text = "object" if rows else "string"
    for column in columns:
        frame[column] = frame[column].astype("int64" if column == "source_row" else text)
    return frame


def read_dataset(
    source: str | Path,
    format: str = "auto",
    column_map: Mapping[str, str] | None = None,
    *,
    hf_split: str = "train",
    near_duplicates: NearDuplicateIndex | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ReadResult:
    """Read `source` (file, folder or hub name; see the module docstring) into a ReadResult.

    `format`: auto | alpaca | sharegpt | messages | csv | parquet | hf. alpaca/sharegpt/messages
    fix the row shape (the container still follows the extension); csv/parquet fix the container.
    `column_map`: our field (instruction, input, output, system) -> the file's column name.
    `near_duplicates`: the index rows are checked against and the kept ones added to; None: no check.
    `progress`: told (rows checked, rows read) as the rows are accepted or rejected.
    """
    fmt = str(format or "auto").strip().lower()
    if fmt not in FORMATS:
        raise DatasetReadError(source, "", f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    try:
        columns = resolve_column_map(column_map)
    except ValueError as err:
        raise DatasetReadError(source, "column map", str(err)) from None
    mapped = set(column_map or {})

    name = str(source)
    path = Path(source)
    if fmt == "hf" or (fmt == "auto" and not path.exists() and looks_like_hub_id(name)):
        parts = [_read_hub(name, hf_split, columns, mapped)]
    elif path.is_dir():
        parts = [_read_file(member, fmt, columns, mapped) for member in dataset_files(path)]
    elif path.is_file():
        parts = [_read_file(path, fmt, columns, mapped)]
    elif path.exists():
        raise DatasetReadError(source, "", "not a regular file or folder")
    else:
        raise DatasetReadError(source, "", "no such file or folder")
    return assemble(parts, near_duplicates, progress)


def dataset_files(folder: Path) -> list[Path]:
    """The files of `folder` that read_dataset reads, in the order it reads them."""
    files = sorted(
        child
        for child in folder.iterdir()
        if child.is_file() and not child.name.startswith(".") and child.suffix.lower() in SUPPORTED_SUFFIXES
    )
    if not files:
        raise DatasetReadError(folder, "", f"the folder holds no dataset files ({' '.join(SUPPORTED_SUFFIXES)})")
    return files


@dataclass(frozen=True)
class _Part:
    """One file's rows, each already converted to a Pair or a RowRejected."""

    source_file: str
    format: str
    rows: list[tuple[RawRecord, Pair | RowRejected]]


def _read_file(path: Path, fmt: str, columns: dict[str, str], mapped: set[str]) -> _Part:
    try:
        with path.open("rb") as handle:
            head = handle.read(SNIFF_BYTES)
        container = container_of(path, fmt, head)
        data = b"" if container == "parquet" else path.read_bytes()
    except OSError as err:
        raise DatasetReadError(path, "", f"cannot read the file: {err.strerror or err}") from None

    if container == "parquet":
        header, records = parquet_records(path)
        _require_rows(path, records)
        label, shape = "parquet", _table_shape(path, header, fmt, columns, mapped)
    else:
        # Sniff only when guessing: an explicit format means "this is a dataset", and then every
        # undecodable line is kept as a rejected row rather than refused wholesale.
        kind = binary_kind(head) if fmt == "auto" else None
        if kind:
            raise DatasetReadError(path, "", f"this is {kind}, not a dataset")
        if container == "csv":
            if fmt in ("sharegpt", "messages"):
                raise DatasetReadError(path, "", f"a CSV holds flat rows; format {fmt!r} needs JSON or Parquet")
            header, records = csv_records(path, data, csv_delimiter(path))
            _require_columns(path, "line 1 (header)", header, columns, mapped)
            _require_rows(path, records)
            label, shape = "csv", "alpaca"
        else:
            records = json_records(path, data)
            _require_rows(path, records)
            shape = fmt if fmt in RECORD_FORMATS else _json_shape(path, records, columns)
            label = shape
    return _Part(str(path), label, [(record, _convert(record, shape, columns)) for record in records])


def _require_rows(path: Path, records: list[RawRecord]) -> None:
    """An empty source is almost always a mistake (a failed export, the wrong file)."""
    if not records:
        raise DatasetReadError(path, "", "the file holds no rows")


def _read_hub(name: str, split: str, columns: dict[str, str], mapped: set[str]) -> _Part:
    header, records = hub_records(name, split)
    shape = _table_shape(Path(name), header, "auto", columns, mapped)
    if not records:
        raise DatasetReadError(name, f"split {split!r}", "the dataset holds no rows")
    return _Part(name, "hf", [(record, _convert(record, shape, columns)) for record in records])


def _json_shape(path: Path, records: list[RawRecord], columns: dict[str, str]) -> str:
    """Row shape from the first row that is a JSON object."""
    first = next((r for r in records if r.problem is None and isinstance(r.value, dict)), None)
    if first is None:
        raise DatasetReadError(path, "", "no row is a JSON object, so this is not a dataset")
    shape = record_format_of(first.value, columns)
    if shape is None:
        keys = ", ".join(repr(k) for k in list(first.value)[:8]) or "none"
        raise DatasetReadError(path, first.location, f"unrecognised row (keys {keys}); {shape_hint(columns)}")
    return shape


def _table_shape(path: Path, header: list[str], fmt: str, columns: dict[str, str], mapped: set[str]) -> str:
    """Row shape of a table (Parquet, hub) from its column names."""
    shape = fmt if fmt in RECORD_FORMATS else record_format_of(dict.fromkeys(header), columns)
    if shape in _TURN_COLUMNS and _TURN_COLUMNS[shape] not in header:
        raise DatasetReadError(
            path, "columns", f"format {shape!r} needs a {_TURN_COLUMNS[shape]!r} column; found {_names(header)}"
        )
    if shape in (None, "alpaca"):
        _require_columns(path, "columns", header, columns, mapped)
    return shape or "alpaca"


_TURN_COLUMNS = {"sharegpt": "conversations", "messages": "messages"}


def _require_columns(path: Path, location: str, header: list[str], columns: dict[str, str], mapped: set[str]) -> None:
    """Required fields, and optional ones the user mapped by hand, must name existing columns."""
    wanted = [columns[f] for f in REQUIRED_FIELDS] + [columns[f] for f in sorted(mapped) if f not in REQUIRED_FIELDS]
    missing = [column for column in wanted if column not in header]
    if missing:
        raise DatasetReadError(
            path, location, f"missing column(s) {_names(missing)}; found {_names(header)} (map them with a column map)"
        )


def _names(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "") if names else "none"


def _convert(record: RawRecord, shape: str, columns: dict[str, str]) -> Pair | RowRejected:
    if record.problem is not None:
        return record.problem
    try:
        pair = record_to_pair(record.value, shape, columns)
    except RowRejected as rejected:
        return rejected
    return replace(pair, row_id=pair.content_id())


def assemble(
    parts: list[_Part],
    near_duplicates: NearDuplicateIndex | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ReadResult:
    """Accept or reject every row of every part, in order; later copies of a content are duplicates,
    later rows that `near_duplicates` matches to a kept row are near-duplicates."""
    accepted: list[Pair] = []
    provenance: list[Provenance] = []
    rejected: list[RejectedRow] = []
    first_seen: dict[str, str] = {}
    total, done = sum(len(part.rows) for part in parts), 0
    for part in parts:
        for record, outcome in part.rows:
            done += 1
            if progress is not None:
                progress(done, total)
            if isinstance(outcome, Pair) and outcome.row_id in first_seen:
                outcome = RowRejected(
                    DUPLICATE, f"same content as {first_seen[outcome.row_id]} (row_id {outcome.row_id})"
                )
            elif isinstance(outcome, Pair) and near_duplicates is not None:
                where = f"{part.source_file} {record.location}"
                match = near_duplicates.check(outcome.row_id, where, dedup_text(outcome))
                if match is not None:
                    outcome = RowRejected(NEAR_DUPLICATE, match.describe())
            if isinstance(outcome, RowRejected):
                rejected.append(
                    RejectedRow(
                        part.source_file,
                        record.source_row,
                        outcome.reason,
                        outcome.detail,
                        record.raw_text,
                        record.location,
                    )
                )
                continue
            first_seen[outcome.row_id] = f"{part.source_file} {record.location}"
            accepted.append(outcome)
            provenance.append(Provenance(part.source_file, record.source_row, part.format))
    formats = sorted({part.format for part in parts})
    return ReadResult(
        accepted=accepted,
        provenance=provenance,
        rejected=rejected,
        format=formats[0] if len(formats) == 1 else "mixed",
        rows_read=sum(len(part.rows) for part in parts),
        files=[part.source_file for part in parts],
    )
