"""One outcome per row, never silent: what the teacher did with it and what the pair is now.

A row that was not reflected (parse failure, teacher error, skipped) keeps its original pair
whole: never a new instruction with the old answer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from reflection_assets.schema import Pair
from reflection_assets.teacher.parsing import parse_reflection
from reflection_assets.teacher.types import CALL_OK, CALL_SKIPPED, INSTRUCTION, ChatResult

REFLECTED = "reflected"
PARSE_FAILED = "parse_failed"
TEACHER_ERROR = "teacher_error"
SKIPPED = "skipped"
OUTCOMES = (REFLECTED, PARSE_FAILED, TEACHER_ERROR, SKIPPED)

OUTCOME_COLUMNS = [
    "row_id",
    "stage",
    "outcome",
    "new_instruction",
    "new_input",  # "" once reflected at the instruction stage: the input is folded in
    "new_output",
    "raw_text",  # the teacher's whole reply, also when it did not parse
    "error",  # parse reason, teacher error or skip reason; "" when reflected
    "call_key",
    "prompt_tokens",
    "completion_tokens",
    "cached",
]


@dataclass(frozen=True)
class Outcome:
    row_id: str
    stage: str
    outcome: str
    new_instruction: str
    new_input: str
    new_output: str
    raw_text: str
    error: str
    call_key: str
    prompt_tokens: int
    completion_tokens: int
    cached: bool


def kept(pair: Pair, row_id: str, stage: str, outcome: str, error: str, call_key: str = "", raw_text: str = "",
         result: ChatResult | None = None, cached: bool = False) -> Outcome:
    """An outcome that keeps the original pair whole."""
    return Outcome(
        row_id, stage, outcome, pair.instruction, pair.input, pair.output, raw_text, error, call_key,
        result.prompt_tokens if result else 0, result.completion_tokens if result else 0, cached,
    )


def outcome_of(pair: Pair, row_id: str, stage: str, call_key: str, result: ChatResult, cached: bool) -> Outcome:
    """Classify one teacher result for one pair."""
    if result.status == CALL_SKIPPED:
        return kept(pair, row_id, stage, SKIPPED, result.error or "skipped", call_key, result=result)
    if result.status != CALL_OK:
        return kept(
            pair, row_id, stage, TEACHER_ERROR, result.error or "teacher error", call_key, result.text, result, cached
        )
    parsed = parse_reflection(stage, result.text, stopped_naturally=result.finish_reason != "length")
    if not parsed.ok:
        return kept(pair, row_id, stage, PARSE_FAILED, parsed.reason, call_key, result.text, result, cached)
    if stage == INSTRUCTION:
        instruction, input_text, output = parsed.instruction, "", parsed.answer
    else:
        instruction, input_text, output = pair.instruction, pair.input, parsed.answer
    return Outcome(
        row_id, stage, REFLECTED, instruction, input_text, output, result.text, "", call_key,
        result.prompt_tokens, result.completion_tokens, cached,
    )


def outcomes_frame(outcomes: list[Outcome]) -> pd.DataFrame:
    """Outcomes as a DataFrame with exactly OUTCOME_COLUMNS (fixed dtypes even when empty)."""
    frame = pd.DataFrame([asdict(o) for o in outcomes], columns=OUTCOME_COLUMNS)
    for column in ("prompt_tokens", "completion_tokens"):
        frame[column] = frame[column].astype("int64")
    frame["cached"] = frame["cached"].astype("bool")
    return frame
