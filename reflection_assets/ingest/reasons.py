"""Why an input row was rejected: a closed vocabulary, so reports and queries can group by it."""

from __future__ import annotations

INVALID_JSON = "invalid_json"  # the line is not JSON at all
BAD_UTF8 = "bad_utf8"  # undecodable bytes, or a lone surrogate that no UTF-8 writer accepts
NOT_AN_OBJECT = "not_an_object"  # a list / string / number where a row, a turn or a turn list belongs
MISSING_FIELD = "missing_field"  # a required field (or the user turn before the answer) is absent
EMPTY_FIELD = "empty_field"  # a required text is empty or only whitespace
NON_STRING_FIELD = "non_string_field"  # a text field holds a number, list, object...
NUL_BYTE = "nul_byte"  # NUL characters break tokenizers and C-string based tools downstream
NO_ASSISTANT_TURN = "no_assistant_turn"  # a conversation with nothing to learn from
UNKNOWN_ROLE = "unknown_role"  # a turn whose speaker we cannot map to system/user/assistant
DUPLICATE = "duplicate"  # exact duplicate content; the first copy is kept
NEAR_DUPLICATE = "near_duplicate"  # nearly the same text as a kept row (ingest.near_duplicates); the first is kept

REASONS: tuple[str, ...] = (
    INVALID_JSON,
    BAD_UTF8,
    NOT_AN_OBJECT,
    MISSING_FIELD,
    EMPTY_FIELD,
    NON_STRING_FIELD,
    NUL_BYTE,
    NO_ASSISTANT_TURN,
    UNKNOWN_ROLE,
    DUPLICATE,
    NEAR_DUPLICATE,
)


class RowRejected(Exception):
    """Raised by the per-row converters; the reader turns it into a rejected row, never a crash."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
