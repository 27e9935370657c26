import json

import pytest

from reflection_assets.demo_data import DEMO_EVAL_PATH
from reflection_assets.evaluation.checkers import CHECKERS
from reflection_assets.evaluation.extraction import extract_number
from reflection_assets.evaluation.suites import (
    EvalDataError,
    arithmetic_items,
    gsm8k_items,
    heldout_items,
    ifeval_items,
    judge_items,
)


def test_generated_suites_are_seeded():
    assert arithmetic_items(10, seed=1) == arithmetic_items(10, seed=1)
    assert arithmetic_items(10, seed=1) != arithmetic_items(10, seed=2)
    assert [i.item_id for i in ifeval_items(12)] == [i.item_id for i in ifeval_items(12)]


def test_arithmetic_answers_are_exact_integers():
    for item in arithmetic_items(40):
        assert int(item.reference) >= 0
        assert extract_number(f"#### {item.reference}") == item.reference


def test_ifeval_items_cover_every_checker():
    assert {i.check["kind"] for i in ifeval_items(10)} == set(CHECKERS)  # ten forms, ten kinds


def test_the_demo_eval_file_splits_into_gsm8k_and_judge_rows_and_all_of_them_are_nll_items():
    """gsm8k and judge split the file between them (no row in both); heldout_nll scores every row's
    reference answer, so it shares instructions with both (the eval_scores metadata says so)."""
    nll, gsm, judged = heldout_items(DEMO_EVAL_PATH), gsm8k_items(DEMO_EVAL_PATH), judge_items(DEMO_EVAL_PATH)
    assert len(nll) == len(gsm) + len(judged)
    assert not {i.instruction for i in gsm} & {i.instruction for i in judged}
    nll_instructions = {i.instruction for i in nll}
    assert {i.instruction for i in judged} <= nll_instructions
    assert gsm[0].reference == "27" and "####" in gsm[0].instruction


def test_a_gsm8k_file_with_question_and_answer(tmp_path):
    path = tmp_path / "gsm.jsonl"
    path.write_text(json.dumps({"question": "2+2?", "answer": "2+2=4\n#### 4"}) + "\n\n")
    assert [i.reference for i in gsm8k_items(path)] == ["4"]


def test_bad_eval_files_name_the_place(tmp_path):
    with pytest.raises(EvalDataError, match="no such eval file"):
        heldout_items(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "x", "output": "y"}\nnot json\n')
    with pytest.raises(EvalDataError, match="bad.jsonl:2: not JSON"):
        heldout_items(bad)
    bad.write_text('{"prompt": "x"}\n')
    with pytest.raises(EvalDataError, match="bad.jsonl:1: needs a text field instruction or question"):
        heldout_items(bad)


def test_generated_suites_never_repeat_an_item():
    """A repeated item would be counted twice and break the pairing of models on items (seen: 13 ids in 15)."""
    from reflection_assets.evaluation.suites import arithmetic_items, distinct_items, ifeval_items

    for make in (arithmetic_items, ifeval_items):
        for seed in range(5):
            items = make(40, seed=seed)
            assert len(items) == 40 and len({i.item_id for i in items}) == 40
    with pytest.raises(ValueError, match="distinct"):
        distinct_items(lambda _: arithmetic_items(1)[0], 2)
