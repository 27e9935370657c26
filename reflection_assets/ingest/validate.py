"""validate_file: read a source and report what would be accepted and why rows would not be."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reflection_assets.ingest.near_duplicates import NearDuplicateIndex, NearDuplicateSettings
from reflection_assets.ingest.readers import ReadResult, RejectedRow, read_dataset
from reflection_assets.ingest.reasons import NEAR_DUPLICATE

EXAMPLES = 5  # rejected rows shown per report: enough to find the pattern, short enough to read
NEAR_DUPLICATES_SHOWN = 20  # near-duplicates in the printed summary; the JSON report has every one


def validate_file(
    source: str | Path,
    format: str = "auto",
    column_map: Mapping[str, str] | None = None,
    *,
    examples: int = EXAMPLES,
    near_duplicates: NearDuplicateSettings | None = None,
) -> dict[str, Any]:
    """The report of reading `source`; raises DatasetReadError when it cannot be read at all.

    Near-duplicates are found within `source` only (the ingest also checks other partitions);
    `near_duplicates` defaults to the ingest's settings, `enabled=False` skips the check.
    """
    settings = near_duplicates or NearDuplicateSettings()
    index = NearDuplicateIndex(settings) if settings.enabled else None
    return build_report(str(source), read_dataset(source, format, column_map, near_duplicates=index), examples)


def build_report(source: str, result: ReadResult, examples: int = EXAMPLES) -> dict[str, Any]:
    """JSON-ready counts; `examples` lists the first few rejected rows so users can find them, and
    `near_duplicates` every near-duplicate with the row it repeats (each costs teacher calls)."""
    return {
        "file": source,
        "format": result.format,
        "rows_read": result.rows_read,
        "accepted": len(result.accepted),
        "rejected": len(result.rejected),
        "reasons": result.reason_counts(),
        "examples": [_where(row) for row in result.rejected[:examples]],
        "near_duplicates": [_where(row) for row in result.rejected if row.reason == NEAR_DUPLICATE],
    }


def _where(row: RejectedRow) -> dict[str, Any]:
    return {
        "source_file": row.source_file,
        "source_row": row.source_row,
        "location": row.location,
        "reason": row.reason,
        "detail": row.detail,
    }


def format_summary(report: Mapping[str, Any]) -> str:
    """A few readable lines: totals, counts per reason, the first rejected rows."""
    lines = [
        f"{report['file']}: format {report['format']}, {report['rows_read']} rows read, "
        f"{report['accepted']} accepted, {report['rejected']} rejected"
    ]
    reasons = report.get("reasons") or {}
    width = max((len(reason) for reason in reasons), default=0)
    lines += [f"  {reason:<{width}}  {count}" for reason, count in reasons.items()]
    examples = report.get("examples") or []
    if examples:
        lines.append("first rejected rows:")
        lines += [_row_line(report, row) for row in examples]
    near = report.get("near_duplicates") or []
    if near:
        lines.append(f"near-duplicates within this source ({len(near)}, removed before the teacher):")
        lines += [_row_line(report, row) for row in near[:NEAR_DUPLICATES_SHOWN]]
        if len(near) > NEAR_DUPLICATES_SHOWN:
            lines.append(f"  ... {len(near) - NEAR_DUPLICATES_SHOWN} more (--report FILE lists them all)")
    return "\n".join(lines)



def _row_line(report: Mapping[str, Any], row: Mapping[str, Any]) -> str:
    where = row.get("location") or f"row {row['source_row']}"
    file = f"{row['source_file']} " if row["source_file"] != report["file"] else ""
    return f"  {file}{where}: {row['reason']}: {row['detail']}"
