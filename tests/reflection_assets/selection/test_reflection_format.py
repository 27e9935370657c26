"""Reflection-70B format: prompt, guided segments, validator, output extraction."""

from __future__ import annotations

import pytest

from reflection_assets.reflection70b import (
    REFLECTION_SYSTEM_PROMPT,
    build_reflection_format_prompt,
    extract_output,
    guided_markers,
    join_guided,
    validate_reflection_format,
)
from reflection_assets.schema import Pair

GOOD = [
    "<thinking>\n2 + 2 is 5.\n<reflection>No: 2 + 2 is 4.</reflection>\nSo 4.\n</thinking>\n<output>\n4\n</output>",
    "<thinking>Add them.</thinking>\n<reflection>Check the carry.</reflection>\n<output>4</output>\n",
    "  <thinking>Simple.</thinking><output>4</output>",  # no reflection: allowed by default
]

BAD = [
    ("", "no_thinking"),
    ("just an answer", "no_thinking"),
    ("Sure! <thinking>x</thinking><output>y</output>", "text_before_thinking"),
    ("<thinking>x</thinking>", "no_output"),
    ("<thinking>x</thinking><output>y", "unclosed_output"),
    ("<thinking>x<output>y</output>", "unclosed_thinking"),
    ("<output>y</output><thinking>x</thinking>", "output_before_thinking"),
    ("<thinking>x</thinking><thinking>z</thinking><output>y</output>", "multiple_thinking"),
    ("<thinking>x</thinking><output>y</output><output>z</output>", "multiple_output"),
    ("<thinking>x</thinking><output>  </output>", "empty_output"),
    ("<thinking> </thinking><output>y</output>", "empty_thinking"),
    ("<thinking>x<reflection>r</thinking><output>y</output>", "unclosed_reflection"),
    (
        "<thinking>x<reflection>a<reflection>b</reflection></reflection></thinking><output>y</output>",
        "nested_reflection",
    ),
    ("<thinking>x<reflection> </reflection></thinking><output>y</output>", "empty_reflection"),
    ("<thinking>x</thinking><output>y<reflection>r</reflection></output>", "tag_inside_output"),
    ("<reflection>r</reflection><thinking>x</thinking><output>y</output>", "reflection_before_thinking"),
    ("<thinking>x</thinking>Answer:<output>y</output>", "text_between_thinking_and_output"),
    ("<thinking>x</thinking><output>y</output> and more", "text_after_output"),
    ("<thinking>x</reflection></thinking><output>y</output>", "unexpected_close_reflection"),
    ("</thinking><output>y</output>", "unexpected_close_thinking"),
]


@pytest.mark.parametrize("text", GOOD)
def test_valid(text):
    assert validate_reflection_format(text) == (True, "ok")


@pytest.mark.parametrize(("text", "reason"), BAD)
def test_invalid(text, reason):
    assert validate_reflection_format(text) == (False, reason)


def test_require_reflection():
    assert validate_reflection_format(GOOD[2], require_reflection=True) == (False, "no_reflection")
    assert validate_reflection_format(GOOD[0], require_reflection=True) == (True, "ok")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD[0], "4"),
        ("<thinking>x</thinking><output>cut off here", "cut off here"),
        ("<thinking>x</thinking> plain answer", "plain answer"),
        ("<thinking>still thinking", ""),
        ("no tags at all", "no tags at all"),
    ],
)
def test_extract_output(text, expected):
    assert extract_output(text) == expected


def test_guided_segments_join_into_valid_text():
    segments = guided_markers()
    assert segments[0].prefix.startswith("<thinking>") and segments[0].stop == "</thinking>"
    assert segments[1].prefix.strip() == "<output>" and segments[1].stop == "</output>"
    text = join_guided(["Think.<reflection>Fix.</reflection>", "Answer.</output>"])
    assert validate_reflection_format(text) == (True, "ok")
    assert extract_output(text) == "Answer."
    with pytest.raises(ValueError):
        join_guided(["only one"])


def test_prompt_mentions_every_tag_and_the_pair():
    messages = build_reflection_format_prompt(Pair(instruction="Add 2 and 2", input="ints", output="4"))
    assert [m["role"] for m in messages] == ["system", "user"]
    body = messages[1]["content"]
    for needle in ("<thinking>", "<reflection>", "<output>", "Add 2 and 2", "[Input]\nints", "[Answer]\n4"):
        assert needle in body
    no_input = build_reflection_format_prompt({"instruction": "Q", "output": "A"})[1]["content"]
    assert "[Input]" not in no_input
    assert "<thinking>" in REFLECTION_SYSTEM_PROMPT and "<output>" in REFLECTION_SYSTEM_PROMPT
