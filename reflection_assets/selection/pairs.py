"""Pairs rebuilt from the raw rows with a stage's texts.

A stage rewrites instruction, input and output; the rest of a row (system prompt, earlier turns,
row id) stays the raw row's. Every stage that hands pairs to the teacher or the student rebuilds
them here, one way.
"""

from __future__ import annotations

import pandas as pd

from reflection_assets.schema import Pair
from reflection_assets.selection.frames import require
from reflection_assets.teacher.outcomes import REFLECTED

CURRENT = ("current_instruction", "current_input", "current_output")
NEW = ("new_instruction", "new_input", "new_output")


def rebuilt_pairs(raw: pd.DataFrame, texts: pd.DataFrame, columns: tuple[str, str, str]) -> list[Pair]:
    """One pair per row of `texts`, in its order: the raw row of its `row_id` with instruction,
    input and output from `texts`' `columns` (in that order)."""
    require(texts, ["row_id", *columns], "the stage's texts")
    frame = raw.set_index("row_id").loc[texts["row_id"]].reset_index()
    for field, column in zip(("instruction", "input", "output"), columns):
        frame[field] = texts[column].values
    return [Pair.from_row(row) for row in frame.to_dict("records")]


def reflected_instruction_pairs(raw: pd.DataFrame, instruction_reflections: pd.DataFrame) -> list[Pair]:
    """Stage 1's rewritten pairs, for the rows the teacher reflected."""
    reflected = instruction_reflections[instruction_reflections["outcome"] == REFLECTED]
    return rebuilt_pairs(raw, reflected, NEW)


def current_pairs(raw: pd.DataFrame, instruction_decisions: pd.DataFrame) -> list[Pair]:
    """The pair stage 1 chose for each row (the original or the reflected one)."""
    return rebuilt_pairs(raw, instruction_decisions, CURRENT)


def reflected_answer_pairs(
    raw: pd.DataFrame, instruction_decisions: pd.DataFrame, response_reflections: pd.DataFrame
) -> list[Pair]:
    """Stage 3's pairs: the current instruction and input with the teacher's reflected answer."""
    won = response_reflections[response_reflections["outcome"] == REFLECTED][["row_id", "new_output"]]
    current = instruction_decisions.set_index("row_id")[["current_instruction", "current_input"]]
    texts = current.loc[won["row_id"]].reset_index().assign(new_output=won["new_output"].values)
    return rebuilt_pairs(raw, texts, ("current_instruction", "current_input", "new_output"))
