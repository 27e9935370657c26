"""Parsers over real teacher replies and adversarial ones."""

from __future__ import annotations

import pytest

from reflection_assets.teacher.parsing import (
    content_problem,
    parse_instruction_reflection,
    parse_reflection,
    parse_response_reflection,
)

# A reply in the style of a large teacher (GPT-4 class), layout followed.
LARGE_TEACHER = """The instruction is short and leaves the audience unspecified; it needs little reasoning.
The answer is relevant but generic and lacks detail.

[New Instruction]
List three evidence-based habits that improve sleep quality for shift workers, and explain briefly why each works.
[End]
[New Answer]
1. Keep a fixed sleep window, even on days off: it stabilises the circadian rhythm.
2. Block light for the last hour before sleep: light delays melatonin release.
3. Avoid caffeine in the six hours before sleep: it blocks adenosine receptors.
[End]"""

# Real replies of SmolLM2-135M-Instruct (bundled teacher) to the instruction prompt, unguided.
SMOL_UNGUIDED = "The answer to this instruction is:\n\n### Instruction\nEat well, sleep, exercise."
# ... and guided, where an instruction section ran out of tokens (the plan stops there).
SMOL_GUIDED_TRUNCATED = (
    "Bonjour\n\n### Instruction\nTranslate to English\n\n[New Instruction]\n\n### Instruction\n"
    "Translate to French\n\nGood morning\n\n### Answer\nBonjour\n\n["
)


def test_large_teacher_reply_parses() -> None:
    parsed = parse_instruction_reflection(LARGE_TEACHER)
    assert parsed.ok and parsed.reason == "ok"
    assert parsed.instruction.startswith("List three evidence-based habits")
    assert parsed.answer.startswith("1. Keep a fixed sleep window") and parsed.answer.endswith("adenosine receptors.")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (SMOL_UNGUIDED, "missing_instruction_marker"),
        (SMOL_GUIDED_TRUNCATED, "missing_answer_marker"),
        ("", "missing_instruction_marker"),
        ("[New Instruction]\n[End]\n[New Answer]\nSomething.\n[End]", "empty_instruction"),
        ("[New Instruction]\nDo X.\n[End]\n[New Answer]\n   \n[End]", "empty_answer"),
        ("[New Instruction]\n(the new instruction)\n[End]\n[New Answer]\n(the answer to the new instruction)\n[End]",
         "placeholder_instruction"),
        ("[New Instruction]\nDo X well.\n[End]\n[New Answer]\n<your answer here>\n[End]", "placeholder_answer"),
        ("[New Instruction]\n...\n[End]\n[New Answer]\nFine.\n[End]", "empty_instruction"),
        ("[New Instruction]\nDo X well.\n[End]\nThat is all.", "missing_answer_marker"),
        # seen from the bundled 135M teacher on Alpaca: the same sentence in both sections
        ("[New Instruction]\nI'm ready to help. What's your next question?\n[End]\n"
         "[New Answer]\nI'm ready to  help. what's your next question?\n[End]", "answer_repeats_instruction"),
    ],
)
def test_unusable_replies_name_their_reason(text: str, reason: str) -> None:
    parsed = parse_instruction_reflection(text)
    assert not parsed.ok
    assert parsed.reason == reason
    assert parsed.instruction == parsed.answer == ""


def test_markers_in_other_cases_spacing_and_bold() -> None:
    text = (
        "**[NEW INSTRUCTION]**: Summarise the text below.\n\nText: cats sleep a lot.\n[end]\n"
        "[ new answer ]\nCats sleep.\n[ END ]"
    )
    parsed = parse_instruction_reflection(text)
    assert parsed.ok
    assert parsed.instruction == "Summarise the text below.\n\nText: cats sleep a lot."
    assert parsed.answer == "Cats sleep."


def test_missing_end_between_sections_is_closed_by_the_next_marker() -> None:
    parsed = parse_instruction_reflection(
        "[New Instruction] Write a haiku about rain.\n[New Answer] Rain taps the roof [End]"
    )
    assert parsed.ok and parsed.instruction == "Write a haiku about rain." and parsed.answer == "Rain taps the roof"


def test_final_end_missing_accepted_only_when_the_teacher_stopped_by_itself() -> None:
    text = "[New Instruction] Write a haiku.\n[End]\n[New Answer] Rain taps the roof"
    assert parse_instruction_reflection(text, stopped_naturally=True).ok
    cut = parse_instruction_reflection(text, stopped_naturally=False)
    assert not cut.ok and cut.reason == "truncated_answer"


def test_echoed_layout_before_the_real_sections_is_skipped() -> None:
    text = (
        "I will use this layout:\n[New Instruction]\n(the new instruction)\n[End]\n[New Answer]\n(the answer)\n[End]\n"
        "Critique: too vague.\n[New Instruction]\nName the largest moon of Saturn.\n[End]\n"
        "[New Answer]\nTitan.\n[End]\n"
        "Hope this helps! Let me know if you need anything else."
    )
    parsed = parse_instruction_reflection(text)
    assert parsed.ok and (parsed.instruction, parsed.answer) == ("Name the largest moon of Saturn.", "Titan.")


def test_real_sections_followed_by_an_echoed_layout_keep_the_real_ones() -> None:
    text = (
        "[New Instruction]\nName the largest moon of Saturn.\n[End]\n[New Answer]\nTitan.\n[End]\n"
        "[New Instruction]\n(the new instruction)\n[End]"
    )
    parsed = parse_instruction_reflection(text)
    assert parsed.ok and parsed.instruction == "Name the largest moon of Saturn."


def test_answer_is_taken_after_the_chosen_instruction_only() -> None:
    # An answer marker before the instruction must not be paired with it.
    parsed = parse_instruction_reflection("[New Answer] Early.\n[End]\n[New Instruction] Do Y.\n[End]")
    assert not parsed.ok and parsed.reason == "missing_answer_marker"


def test_better_answer_parses_with_chatter_and_variants() -> None:
    text = "Review: the answer is too short.\n\n[Better Answer]\nWater boils at 100 °C at sea level.\n[End]\nThanks!"
    parsed = parse_response_reflection(text)
    assert parsed.ok and parsed.answer == "Water boils at 100 °C at sea level." and parsed.instruction == ""
    assert parse_response_reflection("[better response] Fine.").ok


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("The answer is fine.", "missing_answer_marker"),
        ("[Better Answer]\n[End]", "empty_answer"),
        ("[Better Answer]\n(the better answer)\n[End]", "placeholder_answer"),
    ],
)
def test_unusable_better_answers(text: str, reason: str) -> None:
    parsed = parse_response_reflection(text)
    assert not parsed.ok and parsed.reason == reason


def test_truncated_better_answer() -> None:
    assert (
        parse_response_reflection("[Better Answer] Water boils at", stopped_naturally=False).reason
        == "truncated_answer"
    )


def test_content_problem_does_not_flag_real_short_content() -> None:
    assert content_problem("Titan.") is None
    assert content_problem("Answer the question: what is 2+2?") is None
    assert content_problem("Instruction") == "placeholder"
    assert content_problem("[Insert new instruction here]") == "placeholder"


def test_unknown_stage_is_an_error() -> None:
    with pytest.raises(ValueError):
        parse_reflection("critique", "x")
