"""Is a selection well formed, and when it keeps nothing, why.

Zero selected rows is a result (common with a small teacher whose rewrites the student rejects),
not an error: it comes with the decision counts that explain it. A malformed selection (missing
columns, duplicated rows, undecided rows, selected rows without text) is an error and stops the
run before anything trains on it.
"""

from __future__ import annotations

import pandas as pd

REQUIRED_SELECTION_COLUMNS = [
    "dataset", "row_id", "instruction_choice", "response_choice", "final_instruction", "final_input",
    "final_output", "final_ifd", "final_rifd", "final_ifd_status", "final_rifd_status", "selected", "selection_reason",
]


def selection_problems(selection: pd.DataFrame) -> list[str]:
    """What makes `selection` unusable for training; empty when it is well formed."""
    missing = [c for c in REQUIRED_SELECTION_COLUMNS if c not in selection.columns]
    if missing:
        return [f"missing columns {missing}"]
    problems = []
    duplicated = int(selection["row_id"].duplicated().sum())
    if duplicated:
        problems.append(f"{duplicated} duplicated row_id(s)")
    undecided = int(selection["selected"].isna().sum())
    if undecided:
        problems.append(f"{undecided} row(s) with no `selected` decision")
    chosen = selection[selection["selected"].fillna(False).astype(bool)]
    for column in ("final_instruction", "final_output"):
        blank = int(chosen[column].fillna("").astype(str).str.strip().eq("").sum())
        if blank:
            problems.append(f"{blank} selected row(s) with an empty {column}")
    return problems


def selected_count(selection: pd.DataFrame) -> int:
    return int(selection["selected"].fillna(False).astype(bool).sum()) if "selected" in selection else 0


def empty_selection_reason(selection: pd.DataFrame) -> str:
    """One line saying why nothing was selected, from the per-row reasons ("" when rows were)."""
    if selected_count(selection):
        return ""
    if selection.empty:
        return "0 rows were selected: no scored rows (no dataset partition has reached response_scores)"
    reasons = selection["selection_reason"].astype(str).value_counts()
    counted = ", ".join(f"{reason} {count}" for reason, count in reasons.items())
    return f"0 of {len(selection)} rows were selected ({counted})"
