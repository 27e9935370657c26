"""Column mapping: which column of a flat file holds each of our fields."""

from __future__ import annotations

from collections.abc import Mapping

FIELDS: tuple[str, ...] = ("instruction", "input", "output", "system")
REQUIRED_FIELDS: tuple[str, ...] = ("instruction", "output")


def resolve_column_map(column_map: Mapping[str, str] | None) -> dict[str, str]:
    """Our field name -> the file's column name, identity for fields not mentioned.

    Raises ValueError for a field we do not know, so a typo ("ouput=a") cannot silently map nothing.
    """
    given = dict(column_map or {})
    unknown = sorted(set(given) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s) in column map: {', '.join(unknown)}; expected {', '.join(FIELDS)}")
    empty = sorted(field for field, column in given.items() if not isinstance(column, str) or not column)
    if empty:
        raise ValueError(f"column map gives no column name for: {', '.join(empty)}")
    return {field: given.get(field, field) for field in FIELDS}


def parse_column_map(text: str | None) -> dict[str, str]:
    """Parse the CLI form "instruction=q,output=a" (whitespace around names is ignored)."""
    if not text or not text.strip():
        return {}
    mapping: dict[str, str] = {}
    for item in text.split(","):
        field, sep, column = item.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise ValueError(f"bad column map entry {item.strip()!r}; expected FIELD=COLUMN, e.g. instruction=q")
        mapping[field.strip()] = column.strip()
    resolve_column_map(mapping)  # validate field names now, with the user's text still at hand
    return mapping

