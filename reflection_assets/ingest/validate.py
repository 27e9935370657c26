"""validate_file: read a source and report what would be accepted and why rows would not be."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reflection_assets.ingest.readers import ReadResult, read_dataset

EXAMPLES = 5  # rejected rows shown per report: enough to find the pattern, short enough to read


def validate_file(
    source: str | Path,
    format: str = "auto",
    column_map: Mapping[str, str] | None = None,
    *,
    examples: int = EXAMPLES,
) -> dict[str, Any]:
    """The report of reading `source`; raises DatasetReadError when it cannot be read at all."""
    return build_report(str(source), read_dataset(source, format, column_map), examples)


def build_report(source: str, result: ReadResult, examples: int = EXAMPLES) -> dict[str, Any]:
    """JSON-ready counts; `examples` lists the first few rejected rows so users can find them."""
    return {
        "file": source,
        "format": result.format,
        "rows_read": result.rows_read,
        "accepted": len(result.accepted),
        "rejected": len(result.rejected),
        "reasons": result.reason_counts(),
        "examples": [
            {
                "source_file": row.source_file,
                "source_row": row.source_row,
                "location": row.location,
                "reason": row.reason,
                "detail": row.detail,
            }
            for row in result.rejected[:examples]
        ],
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
        for row in examples:
            where = row.get("location") or f"row {row['source_row']}"
            file = f"{row['source_file']} " if row["source_file"] != report["file"] else ""
            lines.append(f"  {file}{where}: {row['reason']}: {row['detail']}")
    return "\n".join(lines)
