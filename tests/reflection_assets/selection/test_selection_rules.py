"""The published filter, its decision counts, and the two extensions."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reflection_assets.selection import (
    SELECTION_EXTRA_COLUMNS,
    SelectionSettings,
    decision_counts,
    decision_counts_dict,
    select_rows,
)

NAN = math.nan


def decisions(rows: list[tuple]) -> pd.DataFrame:
    """rows of (row_id, instruction_choice, response_choice, final_ifd, final_rifd[, ifd_status, rifd_status])."""
    records = []
    for r in rows:
        row_id, q, a, ifd, rifd = r[:5]
        ifd_st, rifd_st = r[5:7] if len(r) > 5 else ("ok", "ok")
        records.append(
            {
                "row_id": row_id, "instruction_choice": q, "instruction_reason": "x", "response_choice": a,
                "response_reason": "x", "final_instruction": f"Q-{row_id}", "final_input": "",
                "final_output": f"A-{row_id}", "final_ifd": ifd, "final_rifd": rifd,
                "final_ifd_status": ifd_st, "final_rifd_status": rifd_st,
            }
        )
    return pd.DataFrame(records)


# The published code's four branches, each once passing and once failing the filter.
BRANCHES = [
    ("qr_aw_pass", "reflected", "reflected", 0.5, 0.5),
    ("qr_aw_fail", "reflected", "reflected", 1.5, 0.5),
    ("qr_al_pass", "reflected", "original", 0.5, 0.5),
    ("qr_al_fail", "reflected", "original", 0.5, 1.5),
    ("qo_aw_pass", "original", "reflected", 0.5, 0.5),
    ("qo_aw_fail", "original", "reflected", 1.0, 0.5),
    ("qo_al_pass", "original", "original", 0.5, 0.5),
    ("qo_al_fail", "original", "original", 0.5, 1.0),
]


def test_published_rule_every_branch():
    out = select_rows(decisions(BRANCHES)).set_index("row_id")
    assert sorted(out.index[out["selected"]]) == ["qo_aw_pass", "qr_aw_pass"]
    assert out.loc["qr_aw_pass", "selection_reason"] == "selected:answer_won"
    assert out.loc["qr_aw_fail", "selection_reason"] == "filter:ifd_not_below_max"
    assert out.loc["qo_aw_fail", "selection_reason"] == "filter:ifd_not_below_max"
    for lost in ("qr_al_pass", "qr_al_fail", "qo_al_pass", "qo_al_fail"):
        assert out.loc[lost, "selection_reason"] == "answer_lost"
    assert out.loc["qr_al_fail", "filter_reason"] == "rifd_not_below_max"
    assert out["passes_filter"].tolist() == [True, False] * 4
    assert len(out) == len(BRANCHES)  # every row is kept


def test_decision_counts_four_branches():
    counts = decision_counts(select_rows(decisions(BRANCHES)))
    assert counts.to_dict("records") == [
        {
            "instruction_choice": "reflected",
            "response_choice": "reflected",
            "rows": 2,
            "passed_filter": 1,
            "selected": 1,
        },
        {
            "instruction_choice": "reflected",
            "response_choice": "original",
            "rows": 2,
            "passed_filter": 1,
            "selected": 0,
        },
        {
            "instruction_choice": "original",
            "response_choice": "reflected",
            "rows": 2,
            "passed_filter": 1,
            "selected": 1,
        },
        {"instruction_choice": "original", "response_choice": "original", "rows": 2, "passed_filter": 1, "selected": 0},
    ]
    flat = decision_counts_dict(select_rows(decisions(BRANCHES)))
    assert flat["q_reflected__a_won__rows"] == 2 and flat["q_original__a_lost__passed_filter"] == 1
    assert flat["total_rows"] == 8 and flat["total_selected"] == 2


def test_decision_counts_absent_branches_are_zero():
    counts = decision_counts(select_rows(decisions([("a", "original", "reflected", 0.5, 0.5)])))
    assert len(counts) == 4 and counts["rows"].sum() == 1


@pytest.mark.parametrize(
    ("ifd", "rifd", "statuses", "reason"),
    [
        (1.0, 0.5, ("ok", "ok"), "filter:ifd_not_below_max"),  # IFD exactly 1 fails
        (0.5, 1.0, ("ok", "ok"), "filter:rifd_not_below_max"),  # r-IFD exactly 1 fails
        (0.999999, 0.999999, ("ok", "ok"), "selected:answer_won"),
        (NAN, 0.5, ("prompt_too_long", "ok"), "filter:score_not_ok:final_ifd:prompt_too_long"),
        (0.0, 0.5, ("error", "ok"), "filter:score_not_ok:final_ifd:error"),  # a non-ok 0 never passes
        (0.5, 0.0, ("ok", "empty_response"), "filter:score_not_ok:final_rifd:empty_response"),
        (NAN, 0.5, ("ok", "ok"), "filter:score_not_ok:final_ifd:nan"),
        (0.5, NAN, ("ok", "ok"), "filter:score_not_ok:final_rifd:nan"),
        (0.5, 0.5, (None, "ok"), "filter:score_not_ok:final_ifd:missing"),
    ],
)
def test_filter_edges(ifd, rifd, statuses, reason):
    out = select_rows(decisions([("a", "original", "reflected", ifd, rifd, *statuses)]))
    assert out.loc[0, "selection_reason"] == reason
    assert bool(out.loc[0, "selected"]) == reason.startswith("selected")


def test_output_keeps_input_columns_and_adds_extras():
    frame = decisions(BRANCHES)
    out = select_rows(frame)
    assert list(out.columns) == list(frame.columns) + SELECTION_EXTRA_COLUMNS
    assert out["selected"].dtype == bool


def test_extension_keep_lost_answers():
    out = select_rows(decisions(BRANCHES), SelectionSettings(extension_keep_lost_answers=True)).set_index("row_id")
    assert sorted(out.index[out["selected"]]) == ["qo_al_pass", "qo_aw_pass", "qr_al_pass", "qr_aw_pass"]
    assert out.loc["qr_al_pass", "selection_reason"] == "selected:extension_keep_lost_answers"
    assert out.loc["qr_aw_pass", "selection_reason"] == "selected:answer_won"
    assert out.loc["qo_al_fail", "selection_reason"] == "filter:rifd_not_below_max"


def _budget_rows() -> pd.DataFrame:
    return decisions(
        [
            ("e", "original", "reflected", 0.9, 0.5),
            ("b", "original", "reflected", 0.7, 0.5),
            ("a", "original", "reflected", 0.7, 0.5),  # ties with b: row_id a ranks first
            ("c", "original", "reflected", 0.2, 0.5),
            ("high_fail", "original", "reflected", 1.3, 0.5),  # highest IFD but fails the filter
            ("lost", "original", "original", 0.95, 0.5),  # passes the filter but its answer lost
            ("d", "original", "reflected", 0.1, 0.5),
            ("f", "original", "reflected", 0.05, 0.5),
            ("g", "original", "reflected", 0.04, 0.5),
            ("h", "original", "reflected", 0.03, 0.5),
        ]
    )


def test_extension_budget_count_ranks_by_ifd_with_row_id_tie_break():
    out = select_rows(_budget_rows(), SelectionSettings(extension_budget_count=3)).set_index("row_id")
    assert sorted(out.index[out["selected"]]) == ["a", "b", "e"]
    assert out.loc[["e", "a", "b", "c"], "budget_rank"].tolist() == [1, 2, 3, 4]
    assert out.loc["c", "selection_reason"] == "extension_budget_exceeded"
    assert pd.isna(out.loc["high_fail", "budget_rank"]) and pd.isna(out.loc["lost", "budget_rank"])


def test_extension_budget_tie_break_independent_of_order():
    rows = _budget_rows()
    a = select_rows(rows, SelectionSettings(extension_budget_count=2))
    b = select_rows(rows.iloc[::-1], SelectionSettings(extension_budget_count=2))
    assert sorted(a.loc[a["selected"], "row_id"]) == sorted(b.loc[b["selected"], "row_id"]) == ["a", "e"]


def test_extension_budget_fraction_of_dataset_rounds_down():
    # 10 rows: 0.25 -> 2 rows, 0.5 -> 5 rows (of the 8 eligible that pass)
    out = select_rows(_budget_rows(), SelectionSettings(extension_budget_fraction=0.25))
    assert sorted(out.loc[out["selected"], "row_id"]) == ["a", "e"]
    assert select_rows(_budget_rows(), SelectionSettings(extension_budget_fraction=0.5))["selected"].sum() == 5


def test_extension_budget_with_keep_lost():
    out = select_rows(
        _budget_rows(), SelectionSettings(extension_budget_count=2, extension_keep_lost_answers=True)
    )
    assert sorted(out.loc[out["selected"], "row_id"]) == ["e", "lost"]


def test_budget_larger_than_candidates_keeps_all_passing():
    out = select_rows(_budget_rows(), SelectionSettings(extension_budget_count=100))
    assert out["selected"].sum() == 8


@pytest.mark.parametrize(
    "kwargs",
    [
        {"extension_budget_fraction": 0.1, "extension_budget_count": 3},
        {"extension_budget_fraction": 0.0},
        {"extension_budget_fraction": 1.5},
        {"extension_budget_count": -1},
    ],
)
def test_invalid_settings(kwargs):
    with pytest.raises(ValueError):
        SelectionSettings(**kwargs)


def test_missing_columns():
    with pytest.raises(KeyError):
        select_rows(pd.DataFrame({"row_id": ["a"]}))


def test_empty_frame():
    out = select_rows(decisions([]).reindex(columns=decisions(BRANCHES).columns))
    assert out.empty and decision_counts(out)["rows"].sum() == 0


score = st.one_of(st.floats(0, 2, allow_nan=False), st.just(1.0), st.just(NAN))


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.sampled_from(["reflected", "original"]), st.sampled_from(["reflected", "original"]), score, score,
                  st.sampled_from(["ok", "ok", "error"])),
        max_size=25,
    ),
    keep_lost=st.booleans(),
    budget=st.one_of(st.none(), st.integers(0, 30)),
)
def test_selection_invariants(rows, keep_lost, budget):
    frame = decisions(
        [(f"r{i:02d}", q, a, ifd, rifd, status, "ok") for i, (q, a, ifd, rifd, status) in enumerate(rows)]
    )
    if frame.empty:
        return
    out = select_rows(frame, SelectionSettings(extension_keep_lost_answers=keep_lost, extension_budget_count=budget))
    chosen = out[out["selected"]]
    assert (chosen["final_ifd"] < 1).all() and (chosen["final_rifd"] < 1).all()
    assert (chosen["final_ifd_status"] == "ok").all()
    if not keep_lost:
        assert (chosen["response_choice"] == "reflected").all()
    if budget is not None:
        assert len(chosen) <= budget
        if len(chosen):
            rest = out[out["budget_rank"].notna() & ~out["selected"]]
            assert rest.empty or chosen["final_ifd"].min() >= rest["final_ifd"].max()
    counts = decision_counts(out)
    assert counts["rows"].sum() == len(out) and counts["selected"].sum() == len(chosen)
