import pandas as pd

from reflection_assets.selection.outcome import (
    REQUIRED_SELECTION_COLUMNS,
    empty_selection_reason,
    selected_count,
    selection_problems,
)


def selection(selected, reasons, outputs=None) -> pd.DataFrame:
    n = len(selected)
    frame = pd.DataFrame({c: ["x"] * n for c in REQUIRED_SELECTION_COLUMNS})
    frame["row_id"] = [f"r{i}" for i in range(n)]
    frame["selected"] = selected
    frame["selection_reason"] = reasons
    if outputs is not None:
        frame["final_output"] = outputs
    return frame


def test_well_formed_selection_has_no_problems():
    assert selection_problems(selection([True, False], ["selected:answer_won", "answer_lost"])) == []


def test_problems_are_named():
    reasons = ["selected:answer_won", "answer_lost", "selected:answer_won"]
    frame = selection([True, None, True], reasons, ["a", "b", " "])
    frame.loc[2, "row_id"] = "r0"
    assert selection_problems(frame) == [
        "1 duplicated row_id(s)",
        "1 row(s) with no `selected` decision",
        "1 selected row(s) with an empty final_output",
    ]
    assert selection_problems(frame.drop(columns=["final_ifd"])) == ["missing columns ['final_ifd']"]


def test_empty_selection_says_why_with_the_decision_counts():
    frame = selection([False] * 3, ["answer_lost", "filter:ifd_ge_max", "answer_lost"])
    assert selected_count(frame) == 0
    assert empty_selection_reason(frame) == "0 of 3 rows were selected (answer_lost 2, filter:ifd_ge_max 1)"
    assert empty_selection_reason(frame.iloc[:0]).startswith("0 rows were selected: no scored rows")
    assert empty_selection_reason(selection([True], ["selected:answer_won"])) == ""
