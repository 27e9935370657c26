"""Reading answers out of messy generations: the final number, and the `<output>` part.

Small models wrap numbers in prose, currency, thousands separators and trailing punctuation, and
often restate intermediate results. The rule, in order: a GSM8K `#### N` marker, then an explicit
"answer is N" / "= N" at the end, then the last number in the text.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from reflection_assets.reflection70b import extract_output

_NUMBER = r"-?\$?\s?\d[\d,]*(?:\.\d+)?"
_MARKER = re.compile(rf"####\s*({_NUMBER})")
_ANSWER_IS = re.compile(rf"(?:answer|result|total)\s*(?:is|:|=)\s*({_NUMBER})", re.IGNORECASE)
_ANY = re.compile(_NUMBER)


def normalise_number(raw: str) -> str | None:
    """'$1,234.50' -> '1234.5', '-7.' -> '-7'; None when it is not a number."""
    cleaned = raw.replace("$", "").replace(",", "").replace(" ", "").rstrip(".")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def extract_number(text: str) -> str | None:
    """The answer number of a generation, normalised; None when the text has no number."""
    for pattern in (_MARKER, _ANSWER_IS):
        matches = pattern.findall(text)
        if matches:
            return normalise_number(matches[-1])
    matches = _ANY.findall(text)
    return normalise_number(matches[-1]) if matches else None


def reference_number(answer: str) -> str | None:
    """The reference of a GSM8K answer: the number after `####` (None when it has none)."""
    found = _MARKER.findall(answer)
    return normalise_number(found[-1]) if found else None


def output_part(text: str) -> str:
    """In the Reflection-70B style only `<output>...</output>` is scored (one owner: reflection70b)."""
    return extract_output(text)
