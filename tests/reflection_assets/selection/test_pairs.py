"""Pairs rebuilt from raw rows keep the row's system prompt, history and id, in the stage's order."""

import pandas as pd
import pytest

from reflection_assets.selection.pairs import (
    current_pairs,
    rebuilt_pairs,
    reflected_answer_pairs,
    reflected_instruction_pairs,
)

RAW = pd.DataFrame(
    {
        "row_id": ["a", "b", "c"],
        "instruction": ["ia", "ib", "ic"],
        "input": ["", "xb", ""],
        "output": ["oa", "ob", "oc"],
        "system": ["be brief", "", ""],
        "history": ['[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]', "", ""],
    }
)


def test_a_rebuilt_pair_keeps_the_raw_context_and_takes_the_stage_texts_in_the_stage_order():
    texts = pd.DataFrame({"row_id": ["c", "a"], "i": ["Ic", "Ia"], "x": ["", "Xa"], "o": ["Oc", "Oa"]})
    pairs = rebuilt_pairs(RAW, texts, ("i", "x", "o"))
    assert [p.row_id for p in pairs] == ["c", "a"]
    assert (pairs[1].instruction, pairs[1].input, pairs[1].output) == ("Ia", "Xa", "Oa")
    assert pairs[1].system == "be brief" and [t.content for t in pairs[1].history] == ["hi", "hello"]


def test_texts_without_a_named_column_fail_naming_it():
    with pytest.raises(KeyError, match="new_output"):
        rebuilt_pairs(RAW, pd.DataFrame({"row_id": ["a"], "i": ["x"], "x": [""]}), ("i", "x", "new_output"))


def test_the_three_stage_views():
    reflections = pd.DataFrame(
        {
            "row_id": ["a", "b", "c"],
            "outcome": ["reflected", "kept", "reflected"],
            "new_instruction": ["Ia", "", "Ic"],
            "new_input": ["", "", "Xc"],
            "new_output": ["Oa", "", "Oc"],
        }
    )
    assert [(p.row_id, p.instruction, p.input) for p in reflected_instruction_pairs(RAW, reflections)] == [
        ("a", "Ia", ""),
        ("c", "Ic", "Xc"),
    ]
    decisions = pd.DataFrame(
        {
            "row_id": ["a", "b", "c"],
            "current_instruction": ["Ia", "ib", "ic"],
            "current_input": ["", "xb", ""],
            "current_output": ["Oa", "ob", "oc"],
        }
    )
    assert [p.output for p in current_pairs(RAW, decisions)] == ["Oa", "ob", "oc"]
    answers = pd.DataFrame({"row_id": ["c", "b"], "outcome": ["reflected", "reflected"], "new_output": ["Rc", "Rb"]})
    rebuilt = reflected_answer_pairs(RAW, decisions, answers)
    assert [(p.row_id, p.instruction, p.input, p.output) for p in rebuilt] == [
        ("c", "ic", "", "Rc"),
        ("b", "ib", "xb", "Rb"),
    ]
