"""The Reflection-70B rewrite of selected rows, without Dagster: scripted teacher, tiny real student, real caches."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from reflection_assets.schema import Pair
from reflection_assets.scoring.cache import StudentScoreCache
from reflection_assets.scoring.scorer import ScoringConfig, scores_frame
from reflection_assets.scoring.student import Student
from reflection_assets.selection.reflection_format import rewrite_in_reflection_format
from reflection_assets.teacher.cache import CallCache
from resources.teacher_scripted import CannedReply, ScriptedTeacher
from support.tiny_lm import tiny_model, tiny_tokenizer

FORMATTED = "<thinking>\nPlants turn light into sugar.\n</thinking>\n<output>\nPlants use light.\n</output>"
TEACHER = ScriptedTeacher(replies=[
    CannedReply(match=["Explain photosynthesis."], reply=FORMATTED),
    CannedReply(match=["Name a plant."], reply="A fern."),  # no tags: fails the format validator
    CannedReply(match=["Name a tree."], error="HTTP 503: injected"),
])


def selection_frame() -> pd.DataFrame:
    rows = [("a", "Explain photosynthesis.", "Plants use light.", True), ("b", "Name a plant.", "Moss.", True),
            ("c", "Name a rock.", "Granite.", False), ("d", "Name a tree.", "Oak.", True)]
    return pd.DataFrame([{"row_id": r, "final_instruction": q, "final_input": "", "final_output": a, "selected": s}
                         for r, q, a, s in rows])


@pytest.fixture
def scorer(tmp_path: Path):  # type: ignore[no-untyped-def]
    tokenizer = tiny_tokenizer()
    student = Student(tiny_model(tokenizer), tokenizer, "tiny")
    cache = StudentScoreCache(tmp_path / "w.duckdb")

    def score(pairs: list[Pair], label: str) -> tuple[pd.DataFrame, int]:
        computed = [0]
        frame = scores_frame(pairs, student, ScoringConfig(template="alpaca"), cache=cache,
                             progress=lambda done, total: computed.__setitem__(0, total))
        return frame, computed[0]

    return score


def test_rewrite_keeps_plain_answers_that_fail_and_rescores_the_rest(tmp_path: Path, scorer) -> None:  # type: ignore[no-untyped-def]
    calls = CallCache(tmp_path / "w.duckdb")
    out, numbers = rewrite_in_reflection_format(selection_frame(), TEACHER, calls, scorer, max_new_tokens=64)
    by_id = out.set_index("row_id")
    assert by_id["reflection_format"].to_dict() == {
        "a": "ok", "b": "kept_plain:parse_failed:no_thinking", "c": "not_selected",
        "d": "kept_plain:teacher_error:HTTP 503: injected",
    }
    assert by_id["final_output"].to_dict() == {"a": FORMATTED, "b": "Moss.", "c": "Granite.", "d": "Oak."}
    assert by_id["plain_output"].to_dict() == {"a": "Plants use light.", "b": "Moss.", "c": "Granite.", "d": "Oak."}
    assert by_id.loc["a", "formatted_ifd_status"] == "ok" and by_id.loc["a", "formatted_ifd_ppl"] > 0
    assert by_id.loc[["b", "c", "d"], "formatted_ifd_status"].isna().all()
    assert numbers["format_rows"] == 3 and numbers["format_ok"] == 1 and numbers["format_kept_plain"] == 2
    assert numbers["teacher_calls_made"] == 3 and numbers["tokens_computed"] > 0

    # Again on the same caches: only the failed call is made again, and nothing is scored twice.
    _, again = rewrite_in_reflection_format(selection_frame(), TEACHER, calls, scorer, max_new_tokens=64)
    assert again["teacher_calls_made"] == 1 and again["format_calls_cached"] == 2 and again["tokens_computed"] == 0
