"""One parsed record (a dict) -> one Pair, for each record shape we read.

Pure functions: they raise RowRejected for anything unusable and never touch files.

Conversations (ShareGPT `conversations`, chat `messages`) become one pair: the LAST assistant turn
is the output, the user turn right before it the instruction, every earlier turn the history,
and system turns (plus a top-level "system" string, if any) the system prompt. User turns after
the last assistant turn have no answer to learn from and are dropped; the rest of the
conversation is kept. Every turn, kept or dropped, must be well-formed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

from reflection_assets.ingest.fields import check_text, describe_type, text_field
from reflection_assets.ingest.reasons import (
    MISSING_FIELD,
    NO_ASSISTANT_TURN,
    NON_STRING_FIELD,
    NOT_AN_OBJECT,
    UNKNOWN_ROLE,
    RowRejected,
)
from reflection_assets.schema import Pair, Turn

RecordFormat = Literal["alpaca", "sharegpt", "messages"]
RECORD_FORMATS: tuple[str, ...] = get_args(RecordFormat)

# Speaker names as they appear in the wild -> our roles. Matching ignores case and spaces.
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
MESSAGES_ROLES = {"user": "user", "assistant": "assistant", "system": "system"}


def require_object(value: Any, what: str = "row") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RowRejected(NOT_AN_OBJECT, f"{what} is {describe_type(value)}, not an object")
    return value


def alpaca_pair(record: Any, columns: Mapping[str, str]) -> Pair:
    """A flat record: instruction and output required, input and system optional."""
    row = require_object(record)
    return Pair(
        instruction=text_field(row, columns["instruction"], required=True),
        input=text_field(row, columns["input"], required=False),
        output=text_field(row, columns["output"], required=True),
        system=text_field(row, columns["system"], required=False),
    )


def sharegpt_pair(record: Any) -> Pair:
    return conversation_pair(record, list_key="conversations", role_key="from", text_key="value", roles=SHAREGPT_ROLES)


def messages_pair(record: Any) -> Pair:
    return conversation_pair(record, list_key="messages", role_key="role", text_key="content", roles=MESSAGES_ROLES)


def conversation_pair(
    record: Any, *, list_key: str, role_key: str, text_key: str, roles: Mapping[str, str]
) -> Pair:
    """Split a conversation into (system, history, instruction, output); see the module docstring."""
    row = require_object(record)
    if list_key not in row or row[list_key] is None:
        raise RowRejected(MISSING_FIELD, f"no {list_key!r} field")
    raw_turns = row[list_key]
    if not isinstance(raw_turns, (list, tuple)):
        raise RowRejected(NOT_AN_OBJECT, f"{list_key!r} is {describe_type(raw_turns)}, not an array of turns")
    turns = [parse_turn(t, i, role_key, text_key, roles) for i, t in enumerate(raw_turns, start=1)]

    system_parts = [text_field(row, "system", required=False)]
    system_parts += [content for role, content in turns if role == "system"]
    dialog = [(role, content) for role, content in turns if role != "system"]

    last = max((i for i, (role, _) in enumerate(dialog) if role == "assistant"), default=None)
    if last is None:
        raise RowRejected(NO_ASSISTANT_TURN, f"{len(raw_turns)} turn(s), none from the assistant")
    if last == 0 or dialog[last - 1][0] != "user":
        raise RowRejected(MISSING_FIELD, "no user turn right before the last assistant turn")
    return Pair(
        instruction=dialog[last - 1][1],
        output=dialog[last][1],
        system="\n\n".join(part for part in system_parts if part.strip()),
        history=tuple(Turn(role, content) for role, content in dialog[: last - 1]),
    )


def parse_turn(turn: Any, number: int, role_key: str, text_key: str, roles: Mapping[str, str]) -> tuple[str, str]:
    """(our role, text) of one turn; `number` is 1-based, as users count turns."""
    obj = require_object(turn, f"turn {number}")
    if role_key not in obj or obj[role_key] is None:
        raise RowRejected(MISSING_FIELD, f"turn {number} has no {role_key!r}")
    speaker = obj[role_key]
    if not isinstance(speaker, str):
        raise RowRejected(NON_STRING_FIELD, f"turn {number} {role_key!r} is {describe_type(speaker)}, not a string")
    role = roles.get(speaker.strip().lower())
    if role is None:
        expected = ", ".join(sorted(roles))
        raise RowRejected(UNKNOWN_ROLE, f"turn {number} has {role_key} {speaker!r}; expected one of {expected}")
    label = f"turn {number} {text_key}"
    if text_key not in obj or obj[text_key] is None:
        raise RowRejected(MISSING_FIELD, f"{label} is missing")
    # An empty system turn says nothing but harms nothing; empty user/assistant turns are broken.
    return role, check_text(obj[text_key], label, required=role != "system")


def record_to_pair(record: Any, record_format: str, columns: Mapping[str, str]) -> Pair:
    """Dispatch on the record shape."""
    if record_format == "sharegpt":
        return sharegpt_pair(record)
    if record_format == "messages":
        return messages_pair(record)
    if record_format == "alpaca":
        return alpaca_pair(record, columns)
    raise ValueError(f"unknown record format {record_format!r}")
