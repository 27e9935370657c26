"""The student's two choices (steps 2 and 4 of the method): keep a teacher rewrite or not.

Both are strict comparisons of scores whose status is "ok"; a tie, a failed teacher call or a
score that is not ok keeps the original, with the reason recorded. No thresholds here: the
`< 1` filter belongs to selection (rules.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reflection_assets.scoring.statuses import OK
from reflection_assets.selection.columns import INSTRUCTION_DECISION_COLUMNS, ORIGINAL, RESPONSE_DECISION_COLUMNS
from reflection_assets.selection.frames import (
    aligned_status,
    aligned_value,
    require,
    score_view,
    text,
    unique_rows,
)
from reflection_assets.teacher.outcomes import REFLECTED


def _outcome_reason(outcome: pd.Series, *texts: pd.Series) -> np.ndarray:
    """Per row, why the teacher call cannot be used (reflection_<outcome>), or "" when it can."""
    outcome = outcome.astype(object)
    missing = outcome.isna().to_numpy()
    empty = np.zeros(len(outcome), dtype=bool)
    for t in texts:
        empty |= (text(t).str.strip() == "").to_numpy()
    named = "reflection_" + text(outcome)
    return np.select(
        [missing, (outcome != REFLECTED).to_numpy(), empty],
        ["reflection_missing", named.to_numpy(), "reflection_empty"],
        default="",
    ).astype(object)


def _first_reason(*candidates: tuple[np.ndarray, object]) -> np.ndarray:
    """Per row, the first (condition, reason) that holds; reasons may be arrays."""
    conditions = [c for c, _ in candidates]
    reasons = [np.broadcast_to(np.asarray(r, dtype=object), conditions[0].shape) for _, r in candidates]
    return np.select(conditions, reasons, default="").astype(object)


def decide_instruction(
    raw: pd.DataFrame,
    reflections: pd.DataFrame,
    original_scores: pd.DataFrame,
    reflected_scores: pd.DataFrame,
    *,
    ifd_column: str = "ifd_ppl",
    status_column: str = "ifd_status",
) -> pd.DataFrame:
    """Stage 1: the current pair becomes (Q', A') iff IFD(Q', A') > IFD(Q, A), strictly.

    raw: row_id, instruction, input, output (one row per raw pair; rows of all partitions).
    reflections: the teacher's instruction reflections: row_id, outcome, new_instruction,
        new_output (outcome in reflected | parse_failed | teacher_error | skipped).
    original_scores / reflected_scores: scoring-engine rows for (Q, A) and (Q', A'), keyed by
        row_id; `ifd_column` (default ifd_ppl, what the published selection uses) and its status.
        The raw IFD table of the Cherry baseline serves as `original_scores`.
    Returns INSTRUCTION_DECISION_COLUMNS, one row per raw row, in raw order.
    """
    base = unique_rows(raw, ["row_id", "instruction", "input", "output"], "raw")
    refl = unique_rows(reflections, ["row_id", "outcome", "new_instruction", "new_output"], "reflections")
    merged = base.merge(refl, on="row_id", how="left", validate="one_to_one")
    ids = merged["row_id"]

    orig_value, orig_status = score_view(original_scores, ifd_column, status_column, "original_scores")
    new_value, new_status = score_view(reflected_scores, ifd_column, status_column, "reflected_scores")
    ifd_orig, st_orig = aligned_value(orig_value, ids), aligned_status(orig_status, ids)
    ifd_new, st_new = aligned_value(new_value, ids), aligned_status(new_status, ids)

    outcome_reason = _outcome_reason(merged["outcome"], merged["new_instruction"], merged["new_output"])
    increased = ifd_new > ifd_orig  # False whenever either side is NaN
    reason = _first_reason(
        (outcome_reason != "", outcome_reason),
        (st_orig != OK, "score_not_ok:original:" + st_orig.astype(object)),
        (st_new != OK, "score_not_ok:reflected:" + st_new.astype(object)),
        (increased, "ifd_increased"),
        (np.ones(len(ids), dtype=bool), "ifd_not_increased"),
    )
    take = reason == "ifd_increased"

    return pd.DataFrame(
        {
            "row_id": ids.to_numpy(),
            "instruction_choice": np.where(take, REFLECTED, ORIGINAL),
            "instruction_reason": reason,
            "current_instruction": np.where(take, text(merged["new_instruction"]), text(merged["instruction"])),
            "current_input": np.where(take, "", text(merged["input"])),
            "current_output": np.where(take, text(merged["new_output"]), text(merged["output"])),
            "ifd_original": ifd_orig,
            "ifd_reflected": ifd_new,
            "ifd_original_status": st_orig,
            "ifd_reflected_status": st_new,
        },
        columns=INSTRUCTION_DECISION_COLUMNS,
    )


def decide_response(
    current: pd.DataFrame,
    reflections: pd.DataFrame,
    current_scores: pd.DataFrame,
    reflected_scores: pd.DataFrame,
    *,
    ifd_column: str = "ifd_ppl",
    rifd_column: str = "rifd_ppl",
    ifd_status_column: str = "ifd_status",
    rifd_status_column: str = "rifd_status",
) -> pd.DataFrame:
    """Stage 2: the reflected answer A** wins iff r-IFD(Q*, A**) < r-IFD(Q*, A*), strictly.

    current: decide_instruction's output (the current pair (Q*, A*) per row).
    reflections: the teacher's response reflections of the current pair: row_id, outcome,
        new_output (A**).
    current_scores / reflected_scores: IFD and r-IFD of (Q*, A*) and (Q*, A**), keyed by row_id.
    The final pair is (Q*, A**) when the answer won, else (Q*, A*); its IFD and r-IFD (with
    statuses) are what selection filters on. Returns RESPONSE_DECISION_COLUMNS in `current` order.
    """
    require(current, INSTRUCTION_DECISION_COLUMNS[:6], "current")
    base = current.drop_duplicates("row_id").reset_index(drop=True)
    refl = unique_rows(reflections, ["row_id", "outcome", "new_output"], "reflections")
    merged = base.merge(refl, on="row_id", how="left", validate="one_to_one")
    ids = merged["row_id"]
    columns = (ifd_column, ifd_status_column, rifd_column, rifd_status_column)
    cur = _scores_by_row(current_scores, ids, columns, "current_scores")
    new = _scores_by_row(reflected_scores, ids, columns, "reflected_scores")
    outcome_reason = _outcome_reason(merged["outcome"], merged["new_output"])
    decreased = new["rifd"] < cur["rifd"]  # False whenever either side is NaN
    reason = _first_reason(
        (outcome_reason != "", outcome_reason),
        (cur["rifd_status"] != OK, "score_not_ok:current_rifd:" + cur["rifd_status"].astype(object)),
        (new["rifd_status"] != OK, "score_not_ok:reflected_rifd:" + new["rifd_status"].astype(object)),
        (decreased, "rifd_decreased"),
        (np.ones(len(ids), dtype=bool), "rifd_not_decreased"),
    )
    return _response_frame(merged, reason, cur, new)


def _scores_by_row(frame: pd.DataFrame, ids: pd.Series, columns: tuple[str, str, str, str], name: str) -> dict:
    """IFD, r-IFD and their statuses of `frame` (columns: ifd, ifd status, r-IFD, r-IFD status) in `ids` order."""
    ifd_column, ifd_status_column, rifd_column, rifd_status_column = columns
    ifd, ifd_st = score_view(frame, ifd_column, ifd_status_column, name)
    rifd, rifd_st = score_view(frame, rifd_column, rifd_status_column, name)
    return {
        "ifd": aligned_value(ifd, ids),
        "rifd": aligned_value(rifd, ids),
        "ifd_status": aligned_status(ifd_st, ids),
        "rifd_status": aligned_status(rifd_st, ids),
    }


def _response_frame(merged: pd.DataFrame, reason: np.ndarray, cur: dict, new: dict) -> pd.DataFrame:
    """RESPONSE_DECISION_COLUMNS: the final pair is the reflected answer's where it won, else the current one's."""
    ids = merged["row_id"]
    won = reason == "rifd_decreased"
    out = {
        "row_id": ids.to_numpy(),
        "instruction_choice": merged["instruction_choice"].to_numpy(),
        "instruction_reason": merged["instruction_reason"].to_numpy(),
        "response_choice": np.where(won, REFLECTED, ORIGINAL),
        "response_reason": reason,
        "final_instruction": text(merged["current_instruction"]).to_numpy(),
        "final_input": text(merged["current_input"]).to_numpy(),
        "final_output": np.where(won, text(merged["new_output"]), text(merged["current_output"])),
    }
    for key in ("ifd", "rifd", "ifd_status", "rifd_status"):
        out[f"final_{key}"] = np.where(won, new[key], cur[key])
    for prefix, values in (("current", cur), ("reflected", new)):
        for key, column in values.items():
            out[f"{prefix}_{key}"] = column
    frame = pd.DataFrame(out, columns=RESPONSE_DECISION_COLUMNS)
    for column in ("final_ifd", "final_rifd"):
        frame[column] = frame[column].astype(float)
    return frame
