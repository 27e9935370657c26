"""The Reflection-70B `format` stage: planned, guided and parsed like the other two."""

import pytest

from reflection_assets.schema import Pair
from reflection_assets.teacher.guided import plan_for
from reflection_assets.teacher.parsing import parse_reflection
from reflection_assets.teacher.planning import build_request, plan_calls
from reflection_assets.teacher.settings import ReflectionSettings

GOOD = "<thinking>\n2 + 2 = 5.\n<reflection>No: 2 + 2 = 4.</reflection>\n</thinking>\n<output>\n4\n</output>"


def test_guided_plan_opens_thinking_then_output():
    plan = plan_for("format", critique_tokens=8, section_tokens=16)
    assert [s.prefix for s in plan.steps] == ["<thinking>\n", "\n</thinking>\n<output>\n"]
    assert [s.stop for s in plan.steps] == [("</thinking>",), ("</output>",)]
    assert plan.suffix == "\n</output>"


def test_request_shows_the_answer_and_asks_for_the_format():
    request = build_request("format", Pair("What is 2+2?", "4"), ReflectionSettings(), guided=False)
    user = request.message_dicts()[-1]["content"]
    assert "What is 2+2?" in user and "<thinking>" in user and "<output>" in user


@pytest.mark.parametrize(
    "text, ok, reason",
    [
        (GOOD, True, "ok"),
        ("<thinking>\nx\n</thinking>\n<output>\n\n</output>", False, "empty_output"),
        ("Sure! <output>4</output>", False, None),
        ("[Better Answer]\n4\n[End]", False, None),
    ],
)
def test_parse_accepts_only_the_format(text, ok, reason):
    parsed = parse_reflection("format", text)
    assert parsed.ok is ok
    if ok:
        assert parsed.answer == text.strip()
    elif reason:
        assert parsed.reason == reason


def test_truncated_rewrite_says_so():
    parsed = parse_reflection("format", "<thinking>\nhalf a thou", stopped_naturally=False)
    assert not parsed.ok and parsed.reason.startswith("truncated:")


def test_unknown_stage_is_refused():
    with pytest.raises(ValueError, match="unknown reflection stage"):
        plan_calls([Pair("q", "a")], "poem", {}, ReflectionSettings())
