"""Stage 1 and stage 2 of the student's choice, branch by branch."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from reflection_assets.selection import (
    INSTRUCTION_DECISION_COLUMNS,
    RESPONSE_DECISION_COLUMNS,
    decide_instruction,
    decide_response,
)

NAN = math.nan


def _by_id(frame: pd.DataFrame) -> dict[str, dict]:
    return {r["row_id"]: r for r in frame.to_dict("records")}


@pytest.fixture
def stage1(make) -> dict[str, dict]:
    ids = ["up", "down", "tie", "parse", "error", "skip", "norefl", "orig_bad", "refl_nan", "refl_missing",
           "empty", "refl_bad_with_value"]
    raw = make.raw_frame(ids)
    outcomes = {i: "reflected" for i in ids} | {"parse": "parse_failed", "error": "teacher_error", "skip": "skipped"}
    del outcomes["norefl"]
    refl = make.instruction_reflections(outcomes)
    refl.loc[refl["row_id"] == "empty", "new_instruction"] = "  "
    original = make.ifd_scores({i: (0.5, "ok") for i in ids} | {"orig_bad": (NAN, "prompt_too_long")})
    reflected = {i: (0.5, "ok") for i in ids} | {"up": (0.6, "ok"), "down": (0.4, "ok"), "refl_nan": (NAN, "ok"),
                                                  "refl_bad_with_value": (9.0, "error")}
    del reflected["refl_missing"]
    return _by_id(decide_instruction(raw, refl, original, make.ifd_scores(reflected)))


@pytest.mark.parametrize(
    ("row_id", "choice", "reason"),
    [
        ("up", "reflected", "ifd_increased"),
        ("down", "original", "ifd_not_increased"),
        ("tie", "original", "ifd_not_increased"),
        ("parse", "original", "reflection_parse_failed"),
        ("error", "original", "reflection_teacher_error"),
        ("skip", "original", "reflection_skipped"),
        ("norefl", "original", "reflection_missing"),
        ("orig_bad", "original", "score_not_ok:original:prompt_too_long"),
        ("refl_nan", "original", "score_not_ok:reflected:nan"),
        ("refl_missing", "original", "score_not_ok:reflected:missing"),
        ("empty", "original", "reflection_empty"),
        ("refl_bad_with_value", "original", "score_not_ok:reflected:error"),
    ],
)
def test_stage1_branches(stage1, row_id, choice, reason):
    row = stage1[row_id]
    assert (row["instruction_choice"], row["instruction_reason"]) == (choice, reason)


def test_stage1_current_pair(stage1):
    up, down = stage1["up"], stage1["down"]
    assert (up["current_instruction"], up["current_input"], up["current_output"]) == ("Q'-up", "", "A'-up")
    assert (down["current_instruction"], down["current_output"]) == ("Q-down", "A-down")
    assert down["current_input"] == "in-down"  # odd positions carry an input in raw_frame
    assert (up["ifd_original"], up["ifd_reflected"]) == (0.5, 0.6)


def test_stage1_non_ok_score_is_nan_even_with_a_value(stage1):
    row = stage1["refl_bad_with_value"]
    assert math.isnan(row["ifd_reflected"]) and row["ifd_reflected_status"] == "error"
    assert math.isnan(stage1["orig_bad"]["ifd_original"])


def test_stage1_columns_order_and_dedup(make):
    raw = pd.concat([make.raw_frame(["a", "b"]), make.raw_frame(["a"]).assign(dataset="other")])  # a in two partitions
    out = decide_instruction(
        raw, make.instruction_reflections({"a": "reflected", "b": "reflected"}),
        make.ifd_scores({"a": (0.2, "ok"), "b": (0.2, "ok")}), make.ifd_scores({"a": (0.3, "ok"), "b": (0.1, "ok")}),
    )
    assert list(out.columns) == INSTRUCTION_DECISION_COLUMNS
    assert out["row_id"].tolist() == ["a", "b"]
    assert out["instruction_choice"].tolist() == ["reflected", "original"]


def test_stage1_empty(make):
    empty = make.raw_frame([])
    out = decide_instruction(empty, make.instruction_reflections({}), make.ifd_scores({}), make.ifd_scores({}))
    assert out.empty and list(out.columns) == INSTRUCTION_DECISION_COLUMNS


def test_stage1_ifd_loss_column(make):
    scores_o = make.ifd_scores({"a": (0.5, "ok")}).rename(columns={"ifd_ppl": "ifd_loss"})
    scores_r = make.ifd_scores({"a": (0.6, "ok")}).rename(columns={"ifd_ppl": "ifd_loss"})
    out = decide_instruction(
        make.raw_frame(["a"]),
        make.instruction_reflections({"a": "reflected"}),
        scores_o,
        scores_r,
        ifd_column="ifd_loss",
    )
    assert out.loc[0, "instruction_choice"] == "reflected"


def test_stage1_missing_column_fails_clearly(make):
    with pytest.raises(KeyError, match="original_scores lacks"):
        decide_instruction(make.raw_frame(["a"]), make.instruction_reflections({"a": "reflected"}),
                           pd.DataFrame({"row_id": ["a"]}), make.ifd_scores({"a": (0.1, "ok")}))


@pytest.fixture
def stage2(make) -> dict[str, dict]:
    ids = ["won", "lost", "tie", "parse", "error", "skip", "norefl", "cur_bad", "refl_bad", "refl_ifd_bad"]
    raw = make.raw_frame(ids)
    refl1 = make.instruction_reflections({i: "reflected" for i in ids})
    stage1 = decide_instruction(raw, refl1, make.ifd_scores({i: (0.5, "ok") for i in ids}),
                                make.ifd_scores({i: (0.6 if i == "won" else 0.4, "ok") for i in ids}))
    outcomes = {i: "reflected" for i in ids} | {"parse": "parse_failed", "error": "teacher_error", "skip": "skipped"}
    del outcomes["norefl"]
    current = make.pair_scores({i: (0.7, "ok", 0.8, "ok") for i in ids} | {"cur_bad": (0.7, "ok", NAN, "error")})
    reflected = make.pair_scores(
        {i: (0.3, "ok", 0.5, "ok") for i in ids}
        | {"lost": (0.3, "ok", 0.9, "ok"), "tie": (0.3, "ok", 0.8, "ok"), "refl_bad": (0.3, "ok", 0.1, "error"),
           "refl_ifd_bad": (NAN, "prompt_too_long", 0.5, "ok")}
    )
    return _by_id(decide_response(stage1, make.response_reflections(outcomes), current, reflected))


@pytest.mark.parametrize(
    ("row_id", "choice", "reason"),
    [
        ("won", "reflected", "rifd_decreased"),
        ("lost", "original", "rifd_not_decreased"),
        ("tie", "original", "rifd_not_decreased"),
        ("parse", "original", "reflection_parse_failed"),
        ("error", "original", "reflection_teacher_error"),
        ("skip", "original", "reflection_skipped"),
        ("norefl", "original", "reflection_missing"),
        ("cur_bad", "original", "score_not_ok:current_rifd:error"),
        ("refl_bad", "original", "score_not_ok:reflected_rifd:error"),
        # the comparison needs only r-IFD; the bad IFD then fails the final filter
        ("refl_ifd_bad", "reflected", "rifd_decreased"),
    ],
)
def test_stage2_branches(stage2, row_id, choice, reason):
    row = stage2[row_id]
    assert (row["response_choice"], row["response_reason"]) == (choice, reason)


def test_stage2_final_pair_and_scores(stage2):
    won, lost = stage2["won"], stage2["lost"]
    assert won["instruction_choice"] == "reflected"
    assert (won["final_instruction"], won["final_input"], won["final_output"]) == ("Q'-won", "", "A''-won")
    assert (won["final_ifd"], won["final_rifd"]) == (0.3, 0.5)
    assert (lost["final_instruction"], lost["final_output"]) == ("Q-lost", "A-lost")
    assert lost["final_input"] == "in-lost"
    assert (lost["final_ifd"], lost["final_rifd"]) == (0.7, 0.8)
    bad = stage2["refl_ifd_bad"]
    assert math.isnan(bad["final_ifd"]) and bad["final_ifd_status"] == "prompt_too_long"
    assert bad["final_rifd_status"] == "ok"


def test_stage2_columns(stage2):
    assert set(next(iter(stage2.values()))) == set(RESPONSE_DECISION_COLUMNS)


def test_pipeline_columns(pipeline):
    assert list(pipeline["response_decisions"].columns) == RESPONSE_DECISION_COLUMNS
    assert pipeline["instruction_decisions"]["instruction_choice"].tolist() == ["reflected"] * 4 + ["original"] * 6
