"""Guided generation plans and how continuations are stitched."""

from __future__ import annotations

from reflection_assets.teacher.guided import GuidedState, cut_at_stop, instruction_plan, response_plan
from reflection_assets.teacher.parsing import parse_instruction_reflection, parse_response_reflection


def run(plan, continuations):  # type: ignore[no-untyped-def]
    state = GuidedState()
    for step, (text, hit_length) in zip(plan.steps, continuations):
        state.absorb(step, text, hit_length)
        if state.finished:
            break
    return state, state.close(plan)


def test_instruction_plan_writes_a_layout_that_parses() -> None:
    plan = instruction_plan(critique_tokens=32, section_tokens=64)
    state, text = run(plan, [("Too vague.", True), ("Name Saturn's largest moon.[End] junk", False), ("Titan.", False)])
    assert not state.truncated
    assert text == "Too vague.\n\n[New Instruction]\nName Saturn's largest moon.\n[End]\n[New Answer]\nTitan.\n[End]"
    parsed = parse_instruction_reflection(text)
    assert parsed.ok and parsed.answer == "Titan."


def test_critique_that_writes_the_marker_itself_is_cut_there() -> None:
    plan = instruction_plan(32, 64)
    _, text = run(plan, [("Fine. [New Instruction] Something", False), ("Do X.", False), ("Y.", False)])
    assert text.count("[New Instruction]") == 1 and text.startswith("Fine.")


def test_truncated_section_ends_the_plan_unclosed() -> None:
    plan = instruction_plan(32, 8)
    state, text = run(plan, [("Critique.", True), ("An instruction that never ends", True), ("unused", False)])
    assert state.truncated and not text.endswith("[End]")
    assert not parse_instruction_reflection(text, stopped_naturally=False).ok


def test_response_plan() -> None:
    _, text = run(response_plan(16, 32), [("Thin answer.", False), ("A fuller answer.", False)])
    assert parse_response_reflection(text).answer == "A fuller answer."


def test_cut_at_stop() -> None:
    assert cut_at_stop("abc[End]def", ("[End]",)) == ("abc", True)
    assert cut_at_stop("abc", ("[End]",)) == ("abc", False)
    assert cut_at_stop("a|b#c", ("#", "|")) == ("a", True)


def test_a_section_also_ends_at_a_marker_the_teacher_writes_itself() -> None:
    plan = instruction_plan(32, 64)
    # A backend that honours stop strings returns the text before the first one (no [End] written).
    state, text = run(plan, [("Vague.", False), ("Name a moon of Mars.\n\n", False), ("Phobos.", False)])
    assert "[New Answer]" in plan.steps[1].stop and not state.truncated
    parsed = parse_instruction_reflection(text)
    assert parsed.ok and (parsed.instruction, parsed.answer) == ("Name a moon of Mars.", "Phobos.")
    # A backend that returns the marker too (no stop support) is cut at it.
    _, text = run(plan, [("Vague.", False), ("Name a moon of Mars.\n[New Answer]\nPhobos", False), ("Phobos.", False)])
    assert parse_instruction_reflection(text).instruction == "Name a moon of Mars."
