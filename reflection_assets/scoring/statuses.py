"""Score statuses: every IFD / r-IFD value carries one, so a missing score is never a silent 0/NaN.

The research code turns errors into 0, which passes every "< 1" filter. Here a score whose
status is not ``ok`` is ``None`` and `passes_below` refuses it.
"""

from __future__ import annotations

OK = "ok"
PROMPT_TOO_LONG = "prompt_too_long"  # the prompt alone leaves no room for one scored token
EMPTY_RESPONSE = "empty_response"
EMPTY_INSTRUCTION = "empty_instruction"
SKIPPED = "skipped"  # the caller did not ask for this score (e.g. r-IFD in selection stage 1)
ERROR_PREFIX = "error:"

# Error kinds produced by the scorer itself (others are exception class names).
NONFINITE = "nonfinite"  # a loss came back inf/NaN
ZERO_ALONE_LOSS = "zero_alone_loss"  # ifd_loss would divide by zero
EMPTY_CONTEXT = "empty_context"  # nothing before the first scored token (a served student cannot score it)
SERVER_REFUSED = "server_refused"  # a student server refused this sequence (longer than its max_model_len...)


def error(kind: str) -> str:
    """Status for a failure of `kind` (an exception class name or one of the kinds above)."""
    return f"{ERROR_PREFIX}{kind}"


def is_ok(status: str | None) -> bool:
    return status == OK


def passes_below(value: float | None, status: str | None, threshold: float) -> bool:
    """True only for an ok score strictly below `threshold` (IFD < 1 filters use this)."""
    return is_ok(status) and value is not None and value < threshold


def first_failure(*statuses: str) -> str:
    """The first non-ok status, else ok: a derived score is ok only when all its parts are."""
    for status in statuses:
        if status != OK:
            return status
    return OK
