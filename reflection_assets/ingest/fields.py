"""Checks for one text field: every reader funnels its strings through here, so the rules agree."""

from __future__ import annotations

from typing import Any

from reflection_assets.ingest.reasons import (
    BAD_UTF8,
    EMPTY_FIELD,
    MISSING_FIELD,
    NON_STRING_FIELD,
    NUL_BYTE,
    RowRejected,
)


def has_surrogates(text: str) -> bool:
    """True when `text` cannot be written as UTF-8 (bad bytes read with surrogateescape, or a
    lone surrogate from a JSON escape such as "\\ud800"); hashing and storage would fail on it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def printable_text(text: str) -> str:
    """`text` made writable as UTF-8: escaped bad bytes become U+FFFD, other lone surrogates a
    backslash escape. Used for raw_text, which must survive the warehouse whatever the input."""
    if not has_surrogates(text):
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def text_field(record: dict[str, Any], key: str, required: bool) -> str:
    """The string under `key` (the file's own field or column name), or RowRejected saying why
    it is unusable. An optional field that is absent or null reads as ""; required fields must
    hold non-blank text."""
    if key not in record or record[key] is None:
        if required:
            raise RowRejected(MISSING_FIELD, f"no {key!r} field" if key not in record else f"{key!r} is null")
        return ""
    return check_text(record[key], repr(key), required)


def check_text(value: Any, label: str, required: bool) -> str:
    """Validate one value already known to be present; `label` is shown as given."""
    if not isinstance(value, str):
        raise RowRejected(NON_STRING_FIELD, f"{label} is {describe_type(value)}, not a string")
    if "\x00" in value:
        raise RowRejected(NUL_BYTE, f"{label} contains a NUL character")
    if has_surrogates(value):
        raise RowRejected(BAD_UTF8, f"{label} is not valid Unicode (undecodable bytes or a lone surrogate)")
    if required and not value.strip():
        raise RowRejected(EMPTY_FIELD, f"{label} is empty")
    return value


def describe_type(value: Any) -> str:
    """A value's type in JSON words ("a number", "an array"), for messages users can match to their file."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"
