"""Ablation arms: sizes, shortfall, the reflected_all pairing, Cherry top-k and seeded sampling."""

from __future__ import annotations

import pandas as pd
import pytest

from reflection_assets.selection import ARM_COLUMNS, ARMS, ArmInputs, arm_summary, build_arm, build_arms


def _inputs(p: dict[str, pd.DataFrame], **overrides) -> ArmInputs:
    kwargs = dict(
        raw=p["raw"],
        raw_scores=p["raw_ifd"],
        instruction_reflections=p["instruction_reflections"],
        instruction_decisions=p["instruction_decisions"],
        response_reflections=p["response_reflections"],
        selection=p["selection"],
        seed=7,
    )
    kwargs.update(overrides)
    return ArmInputs(**kwargs)


def test_pipeline_selects_expected_rows(pipeline):
    sel = pipeline["selection"]
    assert sorted(sel.loc[sel["selected"], "row_id"]) == ["r0", "r4", "r9"]


def test_all_arms_columns_and_sizes(pipeline):
    results = build_arms(_inputs(pipeline))
    assert tuple(results) == ARMS
    for arm, result in results.items():
        assert list(result.frame.columns) == ARM_COLUMNS
        assert (result.frame["arm"] == arm).all()
        assert result.frame["row_id"].is_unique
    sizes = {arm: len(r.frame) for arm, r in results.items()}
    assert sizes == {"selective": 3, "reflected_all": 3, "ifd_topk": 3, "random": 3, "longest": 3, "full": 10}
    assert all(r.shortfall == 0 for r in results.values())
    summary = arm_summary(results).set_index("arm")
    assert summary.loc["reflected_all", "candidates"] == 9  # r8's stage-1 reflection failed
    assert summary.loc["ifd_topk", "candidates"] == 9  # r9's raw score is not ok


def test_selective_arm(pipeline):
    frame = build_arm("selective", _inputs(pipeline)).frame.set_index("row_id")
    assert frame.loc["r0", ["instruction", "input", "output"]].tolist() == ["Q'-r0", "", "A''-r0"]
    assert frame.loc["r4", ["instruction", "output"]].tolist() == ["Q-r4", "A''-r4"]
    assert (frame["source"] == "reflected").all()


def test_selective_source_raw_when_nothing_rewritten(pipeline):
    from reflection_assets.selection import SelectionSettings, select_rows

    sel = select_rows(pipeline["response_decisions"], SelectionSettings(extension_keep_lost_answers=True))
    frame = build_arm("selective", _inputs(pipeline, selection=sel)).frame.set_index("row_id")
    assert frame.loc["r6", "source"] == "raw" and frame.loc["r6", "output"] == "A-r6"
    assert frame.loc["r2", "source"] == "reflected"  # Q' kept, answer lost


def test_reflected_all_pairing(pipeline):
    from reflection_assets.selection.arms import reflected_all_candidates

    pairs = reflected_all_candidates(_inputs(pipeline)).set_index("row_id")
    # Q' kept and answer reflected on it -> (Q', A**)
    assert pairs.loc["r2", ["instruction", "input", "output"]].tolist() == ["Q'-r2", "", "A''-r2"]
    # row stayed (Q, A): its A** answers Q, so the arm takes the stage-1 rewrite (Q', A')
    assert pairs.loc["r5", ["instruction", "output"]].tolist() == ["Q'-r5", "A'-r5"]
    assert "r8" not in pairs.index


def test_reflected_all_falls_back_when_answer_reflection_of_q_prime_failed(pipeline):
    refl2 = pipeline["response_reflections"].copy()
    refl2.loc[refl2["row_id"] == "r1", ["outcome", "new_output"]] = ["teacher_error", None]
    from reflection_assets.selection.arms import reflected_all_candidates

    pairs = reflected_all_candidates(_inputs(pipeline, response_reflections=refl2)).set_index("row_id")
    assert pairs.loc["r1", "output"] == "A'-r1"


def test_ifd_topk_drops_ifd_at_least_one_and_non_ok(make):
    ids = ["a", "b", "c", "d", "e", "f"]
    raw = make.raw_frame(ids)
    scores = make.ifd_scores(
        {"a": (1.0, "ok"), "b": (0.9, "ok"), "c": (0.8, "ok"), "d": (0.8, "ok"), "e": (5.0, "error"),
         "f": (float("nan"), "ok")}
    )
    sel = pd.DataFrame({"row_id": ["x", "y"], "selected": [True, True]})
    inputs = ArmInputs(
        raw,
        scores,
        make.instruction_reflections({}),
        pd.DataFrame(columns=["row_id", "instruction_choice"]),
        make.response_reflections({}),
        sel,
    )
    result = build_arm("ifd_topk", inputs)
    assert sorted(result.frame["row_id"]) == ["b", "c"]  # c and d tie at 0.8: c first by row_id
    assert result.candidates == 3 and result.shortfall == 0


def test_shortfall_reported(pipeline):
    sel = pipeline["selection"].copy()
    sel["selected"] = True  # k = 10
    results = build_arms(_inputs(pipeline, selection=sel))
    assert {a: (len(r.frame), r.target, r.shortfall) for a, r in results.items()} == {
        "selective": (10, 10, 0),
        "reflected_all": (9, 10, 1),
        "ifd_topk": (9, 10, 1),
        "random": (10, 10, 0),
        "longest": (10, 10, 0),
        "full": (10, 10, 0),
    }


def test_random_is_seeded_and_order_independent(pipeline):
    one = build_arm("random", _inputs(pipeline)).frame
    again = build_arm("random", _inputs(pipeline)).frame
    shuffled = build_arm("random", _inputs(pipeline, raw=pipeline["raw"].sample(frac=1, random_state=3))).frame
    pd.testing.assert_frame_equal(one, again)
    pd.testing.assert_frame_equal(one, shuffled)
    draws = {tuple(build_arm("random", _inputs(pipeline, seed=s)).frame["row_id"]) for s in range(8)}
    assert len(draws) > 1  # the seed matters
    assert (one["source"] == "raw").all()


def test_unknown_arm(pipeline):
    with pytest.raises(ValueError, match="unknown arm"):
        build_arm("base", _inputs(pipeline))


def test_nothing_selected_gives_empty_sized_arms(pipeline):
    sel = pipeline["selection"].assign(selected=False)
    results = build_arms(_inputs(pipeline, selection=sel))
    assert {a: len(r.frame) for a, r in results.items()} == {
        "selective": 0, "reflected_all": 0, "ifd_topk": 0, "random": 0, "longest": 0, "full": 10,
    }
    assert all(list(r.frame.columns) == ARM_COLUMNS for r in results.values())


def test_longest_takes_the_k_longest_answers_ties_by_row_id(pipeline):
    raw = pipeline["raw"].copy()
    lengths = {"r0": 5, "r1": 50, "r2": 20, "r3": 50, "r4": 1}
    raw["output"] = [("x" * lengths.get(r, 2)) for r in raw["row_id"]]
    result = build_arm("longest", _inputs(pipeline, raw=raw))
    assert result.target == 3
    assert sorted(result.frame["row_id"]) == ["r1", "r2", "r3"]
    assert (result.frame["source"] == "raw").all()


def test_arms_are_drawn_from_clean_candidates_and_keep_the_exported_size(pipeline):
    """A contaminated row leaves an arm's pool before the draw, so every sized arm still reaches k, and k
    is the selective set that left the project (the selection's decontamination named r9)."""
    from reflection_assets.selection.decontamination import (
        BenchmarkItem,
        CandidateDecontamination,
        ContaminationIndex,
        decontaminate,
    )

    selection = pipeline["selection"].assign(contamination=lambda f: f["row_id"].map({"r9": "bench: 1"}).fillna(""))
    raw = pipeline["raw"].copy()
    planted = "the quick brown fox jumps over the lazy dog near the quiet river bank today"
    raw.loc[raw["row_id"] == "r1", "instruction"] = planted  # r1: a raw candidate of random, longest, full
    sel = selection.copy()
    sel.loc[sel["row_id"] == "r9", "final_instruction"] = planted  # the selected row the selection left out
    index = ContaminationIndex([BenchmarkItem("bench", "1", planted)], n=8)
    drawn = CandidateDecontamination(index)
    results = build_arms(_inputs(pipeline, raw=raw, selection=sel, usable=drawn))
    sizes = {arm: (len(r.frame), r.target, r.shortfall) for arm, r in results.items()}
    assert sizes == {"selective": (2, 2, 0), "reflected_all": (2, 2, 0), "ifd_topk": (2, 2, 0),
                     "random": (2, 2, 0), "longest": (2, 2, 0), "full": (9, 9, 0)}
    assert all("r1" not in set(r.frame["row_id"]) for r in results.values())
    # r9's raw pair is clean: other arms may draw it
    assert sorted(results["selective"].frame["row_id"]) == ["r0", "r4"]

    # What an arm reports: the candidates dropped before the draw plus the export's own check (none left).
    one = CandidateDecontamination(index)
    random_arm = build_arm("random", _inputs(pipeline, raw=raw, selection=sel, usable=one))
    report = one.merged(decontaminate(random_arm.frame, index))
    assert report.dropped == 1 and report.records()[0]["row_id"] == "r1" and len(report.kept) == 2
    unfiltered = build_arm("random", _inputs(pipeline, raw=raw, selection=selection))
    assert len(unfiltered.frame) == 2 and unfiltered.target == 2  # k from the selection's audit column alone
