"""The scripted teacher through the real runner and llm_calls cache: canned replies, injected failures, caps."""

from __future__ import annotations

from pathlib import Path

from reflection_assets.schema import Pair
from reflection_assets.teacher.cache import CallCache
from reflection_assets.teacher.prompts import END, NEW_ANSWER, NEW_INSTRUCTION
from reflection_assets.teacher.runner import reflect_rows
from reflection_assets.teacher.settings import ReflectionSettings
from resources.teacher_scripted import NO_RULE, CannedReply, ScriptedTeacher

GOOD = f"{NEW_INSTRUCTION}\nAdd 2 and 3, then double it.\n{END}\n{NEW_ANSWER}\n10\n{END}"
TEACHER = ScriptedTeacher(replies=[
    CannedReply(match=["Add 2 and 3", NEW_INSTRUCTION], reply=GOOD),
    CannedReply(match=["Spell cat"], error="HTTP 503: injected"),
    CannedReply(match=["Name a colour"], reply="no markers at all"),
])
PAIRS = [
    Pair("Add 2 and 3.", "5"),
    Pair("Spell cat.", "c-a-t"),
    Pair("Name a colour.", "Red"),
    Pair("Unscripted.", "?"),
]


def by_instruction(frame, pairs=PAIRS):  # type: ignore[no-untyped-def]
    return dict(zip([p.instruction for p in pairs], frame["outcome"].tolist()))


def test_canned_replies_and_injected_failures_become_outcomes(tmp_path: Path) -> None:
    frame, stats = reflect_rows(PAIRS, "instruction", TEACHER, CallCache(tmp_path / "c.duckdb"), ReflectionSettings())
    assert by_instruction(frame) == {"Add 2 and 3.": "reflected", "Spell cat.": "teacher_error",
                                     "Name a colour.": "parse_failed", "Unscripted.": "teacher_error"}
    errors = dict(zip(frame["outcome"] + ":" + frame["new_instruction"], frame["error"]))
    assert errors["teacher_error:Spell cat."] == "HTTP 503: injected" and errors["teacher_error:Unscripted."] == NO_RULE
    assert frame.loc[frame["outcome"] == "reflected", "new_output"].tolist() == ["10"]
    assert stats.calls_made == 4

    # Same cache, same teacher name: successful calls are reused, failed ones tried again.
    _, again = reflect_rows(PAIRS, "instruction", TEACHER, CallCache(tmp_path / "c.duckdb"), ReflectionSettings())
    assert again.calls_cached == 2 and again.calls_made == 2


def test_caps_skip_calls_before_they_are_made(tmp_path: Path) -> None:
    frame, stats = reflect_rows(
        PAIRS, "instruction", TEACHER, CallCache(tmp_path / "c.duckdb"), ReflectionSettings(max_calls=1)
    )
    assert stats.calls_made == 1 and (frame["outcome"] == "skipped").sum() == 3


def test_choose_and_identity() -> None:
    judge = ScriptedTeacher(name="judge-v1", judge={"Which is better": "B"})
    assert judge.choose([{"role": "user", "content": "Which is better, A or B?"}], ["A", "B"]) == [0.0, 1.0]
    assert judge.choose([{"role": "user", "content": "Something else"}], ["A", "B"]) == [0.5, 0.5]
    assert judge.cache_identity() == {"backend": "scripted", "model": "judge-v1"} and not judge.supports_guided
