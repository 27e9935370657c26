"""Pure parsers for teacher reflections.

Teachers, small ones especially, drift from the requested layout: markers in other cases or in
bold, a missing [End], the layout echoed with its placeholders, chatter around the sections. The
parsers accept what is unambiguous and name the reason for everything else; they never guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reflection_assets.reflection70b import validate_reflection_format
from reflection_assets.teacher.types import FORMAT, INSTRUCTION, RESPONSE

_FLAGS = re.IGNORECASE
_NEW_INSTRUCTION = re.compile(r"\[\s*new[\s_-]*instruction\s*\]", _FLAGS)
_NEW_ANSWER = re.compile(r"\[\s*new[\s_-]*(?:answer|response)\s*\]", _FLAGS)
_BETTER_ANSWER = re.compile(r"\[\s*better[\s_-]*(?:answer|response)\s*\]", _FLAGS)
_END = re.compile(r"\[\s*/?\s*end\s*\]", _FLAGS)
_ANY_START = (_NEW_INSTRUCTION, _NEW_ANSWER, _BETTER_ANSWER)

# Text a teacher copies from the layout instead of writing content: "(the new instruction)",
# "<your answer here>", "[Insert new instruction]", "..." and the like.
_PLACEHOLDER = re.compile(
    r"""^[\s(\[<{"'`*]*
        (?:(?:your|the|a|an|insert|write|put|improved|new|better|rewritten|revised)\s+)*
        (?:instruction|answer|response|question|text|content)s?
        (?:\s+(?:here|goes\s+here|to\s+the\s+new\s+instruction|text))*
        [\s)\]>}"'`*.:]*$""",
    re.IGNORECASE | re.VERBOSE,
)
_ONLY_PUNCTUATION = re.compile(r"^[\W_]*$")
_LEADING_DECORATION = re.compile(r"^\s*(?:\*\*|__)?\s*:?\s*(?:\*\*|__)?[ \t]*\n?")


@dataclass(frozen=True)
class Section:
    text: str
    start: int  # offset of the marker
    end: int  # offset where the section's content ends
    terminated: bool  # closed by [End] or by the next marker, not by the end of the text


@dataclass(frozen=True)
class ParsedReflection:
    """Outcome of parsing; `reason` is "ok" or why the text was not accepted."""

    ok: bool
    instruction: str = ""
    answer: str = ""
    reason: str = "ok"


def find_sections(text: str, marker: re.Pattern[str]) -> list[Section]:
    """Every section opened by `marker`: up to the next [End], the next marker, or the end."""
    sections: list[Section] = []
    for match in marker.finditer(text):
        body_start = match.end()
        stops = [m.start() for pat in (_END, *_ANY_START) if (m := pat.search(text, body_start))]
        body_end = min(stops) if stops else len(text)
        content = _LEADING_DECORATION.sub("", text[body_start:body_end], count=1).strip()
        sections.append(Section(content, match.start(), body_end, terminated=bool(stops)))
    return sections


def content_problem(content: str) -> str | None:
    """Why a section's content is not usable, or None when it is."""
    if _ONLY_PUNCTUATION.match(content):
        return "empty"
    if _PLACEHOLDER.match(content):
        return "placeholder"
    return None


def _normalized(text: str) -> str:
    return " ".join(text.lower().split())


def _last_problem(sections: list[Section]) -> str | None:
    problems = [content_problem(s.text) for s in sections]
    return next((p for p in reversed(problems) if p), None)


def parse_instruction_reflection(text: str, stopped_naturally: bool = True) -> ParsedReflection:
    """Read [New Instruction] ... [End] [New Answer] ... [End] from a teacher's reply.

    The last usable instruction wins (a teacher may echo the layout before filling it in), with
    the first usable answer after it. An answer cut by the end of the text is accepted only when
    the teacher stopped by itself: at the token cap it is a truncated answer.
    """
    instructions = find_sections(text, _NEW_INSTRUCTION)
    if not instructions:
        return ParsedReflection(False, reason="missing_instruction_marker")
    answers = find_sections(text, _NEW_ANSWER)
    for instruction in reversed(instructions):
        if content_problem(instruction.text):
            continue
        following = [a for a in answers if a.start >= instruction.end]
        if not following:
            return ParsedReflection(False, reason="missing_answer_marker")
        usable = [a for a in following if not content_problem(a.text)]
        if not usable:
            return ParsedReflection(False, reason=f"{_last_problem(following)}_answer")
        answer = usable[0]
        if not answer.terminated and not stopped_naturally:
            return ParsedReflection(False, reason="truncated_answer")
        if _normalized(answer.text) == _normalized(instruction.text):
            # Small teachers fill both sections with the same sentence; as a pair it is trivially
            # "predictable" (IFD near 0) and teaches nothing.
            return ParsedReflection(False, reason="answer_repeats_instruction")
        return ParsedReflection(True, instruction.text, answer.text)
    return ParsedReflection(False, reason=f"{_last_problem(instructions)}_instruction")


def parse_response_reflection(text: str, stopped_naturally: bool = True) -> ParsedReflection:
    """Read [Better Answer] ... [End]; the last usable section wins."""
    answers = find_sections(text, _BETTER_ANSWER)
    if not answers:
        return ParsedReflection(False, reason="missing_answer_marker")
    usable = [a for a in answers if not content_problem(a.text)]
    if not usable:
        return ParsedReflection(False, reason=f"{_last_problem(answers)}_answer")
    answer = usable[-1]
    if not answer.terminated and not stopped_naturally:
        return ParsedReflection(False, reason="truncated_answer")
    return ParsedReflection(True, answer=answer.text)


def parse_reflection_format(text: str, stopped_naturally: bool = True) -> ParsedReflection:
    """Accept a Reflection-70B rewrite (<thinking>, optional <reflection>, <output>) as the new answer."""
    ok, reason = validate_reflection_format(text.strip())
    if ok:
        return ParsedReflection(True, answer=text.strip())
    return ParsedReflection(False, reason=reason if stopped_naturally else f"truncated:{reason}")


def parse_reflection(stage: str, text: str, stopped_naturally: bool = True) -> ParsedReflection:
    if stage == INSTRUCTION:
        return parse_instruction_reflection(text, stopped_naturally)
    if stage == RESPONSE:
        return parse_response_reflection(text, stopped_naturally)
    if stage == FORMAT:
        return parse_reflection_format(text, stopped_naturally)
    raise ValueError(f"unknown reflection stage {stage!r}")
