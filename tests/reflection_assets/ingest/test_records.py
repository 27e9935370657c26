"""Record converters: the multi-turn split and the per-field rules, without files."""

import pytest

from reflection_assets.ingest.columns import parse_column_map, resolve_column_map
from reflection_assets.ingest.reasons import RowRejected
from reflection_assets.ingest.records import alpaca_pair, messages_pair, sharegpt_pair
from reflection_assets.schema import Turn

COLUMNS = resolve_column_map(None)


def msg(role, content):
    return {"role": role, "content": content}


def reason_of(convert, record):
    with pytest.raises(RowRejected) as caught:
        convert(record)
    return caught.value.reason


def test_last_assistant_turn_is_the_output_and_earlier_turns_the_history():
    pair = messages_pair(
        {
            "messages": [
                msg("system", "Be brief."),
                msg("user", "Q1"),
                msg("assistant", "A1"),
                msg("user", "Q2"),
                msg("assistant", "A2"),
                msg("user", "unanswered"),
            ]
        }
    )
    assert (pair.system, pair.instruction, pair.output) == ("Be brief.", "Q2", "A2")
    assert pair.history == (Turn("user", "Q1"), Turn("assistant", "A1"))


def test_sharegpt_roles_are_matched_loosely_and_system_turns_joined():
    pair = sharegpt_pair(
        {
            "system": "One.",
            "conversations": [
                {"from": "System", "value": "Two."},
                {"from": " Human ", "value": "Hi"},
                {"from": "GPT", "value": "Hello"},
            ],
        }
    )
    assert pair.system == "One.\n\nTwo." and pair.output == "Hello"


def test_empty_system_turn_is_harmless():
    assert messages_pair({"messages": [msg("system", ""), msg("user", "a"), msg("assistant", "b")]}).system == ""


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"messages": []}, "no_assistant_turn"),
        ({"messages": [msg("user", "only a question")]}, "no_assistant_turn"),
        ({"messages": [msg("assistant", "answer with no question")]}, "missing_field"),
        ({"messages": [msg("user", "q"), msg("assistant", "a"), msg("assistant", "b")]}, "missing_field"),
        ({"messages": "user: hi"}, "not_an_object"),
        ({"messages": ["hi"]}, "not_an_object"),
        ({"messages": [{"content": "no role"}]}, "missing_field"),
        ({"messages": [{"role": 1, "content": "x"}]}, "non_string_field"),
        ({"messages": [msg("user", "q"), {"role": "assistant"}]}, "missing_field"),
        ({"messages": [msg("user", "q"), msg("assistant", [{"type": "text", "text": "a"}])]}, "non_string_field"),
        ({"messages": [msg("function", "x"), msg("user", "q"), msg("assistant", "a")]}, "unknown_role"),
        ({"messages": [msg("user", "q"), msg("assistant", "\ud800")]}, "bad_utf8"),
        ({"conversations": []}, "missing_field"),  # wrong shape for messages
    ],
)
def test_broken_conversations(record, reason):
    assert reason_of(messages_pair, record) == reason


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"instruction": "q"}, "missing_field"),
        ({"instruction": None, "output": "a"}, "missing_field"),
        ({"instruction": " \n", "output": "a"}, "empty_field"),
        ({"instruction": "q", "output": 5}, "non_string_field"),
        ({"instruction": "q", "output": "a", "input": ["x"]}, "non_string_field"),
        ({"instruction": "q", "output": "a\x00"}, "nul_byte"),
        ({"instruction": "q", "output": "a", "system": "s\x00"}, "nul_byte"),
        (["instruction", "output"], "not_an_object"),
    ],
)
def test_broken_alpaca_rows(record, reason):
    assert reason_of(lambda r: alpaca_pair(r, COLUMNS), record) == reason


def test_alpaca_optional_fields_may_be_absent_or_null():
    pair = alpaca_pair({"instruction": "q", "output": "a", "input": None}, COLUMNS)
    assert (pair.input, pair.system) == ("", "")


def test_unknown_reason_is_a_programming_error():
    with pytest.raises(ValueError):
        RowRejected("too_long", "not a reason we report")


def test_column_map_parsing():
    assert parse_column_map("instruction=q, output = a") == {"instruction": "q", "output": "a"}
    assert parse_column_map("") == {}
    assert resolve_column_map({"output": "a"})["output"] == "a"
    for bad in ("instruction", "ouput=a", "instruction=", "=q"):
        with pytest.raises(ValueError):
            parse_column_map(bad)
