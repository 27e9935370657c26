import pandas as pd
import pytest

from reflection_assets.schema import Pair, Turn
from reflection_assets.training.dataset import TrainingDataError, training_examples, training_pairs
from tests.support.tiny_lm import tiny_tokenizer


def arm_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "arm": "selective",
            "row_id": ["a", "b", "c"],
            "instruction": ["Q1", "Q2 rewritten", "Q3"],
            "input": ["in1", "", ""],
            "output": ["A1", "A2", "  "],
            "source": ["raw", "reflected", "raw"],
        }
    )


def raw_frame() -> pd.DataFrame:
    history = Pair("x", "y", history=(Turn("user", "earlier"), Turn("assistant", "reply"))).history_json()
    return pd.DataFrame(
        {
            "row_id": ["a", "b", "c"],
            "system": ["Be brief.", "Be kind.", ""],
            "history": [history, "[]", "[]"],
            "instruction": ["Q1", "Q2", "Q3"],
        }
    )


def test_pairs_take_system_prompt_and_earlier_turns_from_the_raw_row():
    pairs = {p.row_id: p for p in training_pairs(arm_frame(), raw_frame())}
    assert pairs["a"].system == "Be brief."
    assert pairs["a"].history == (Turn("user", "earlier"), Turn("assistant", "reply"))
    assert pairs["b"].system == "Be kind." and pairs["b"].instruction == "Q2 rewritten"  # rewritten text, raw context


def test_pairs_without_raw_rows_train_without_context():
    pairs = training_pairs(arm_frame())
    assert all(p.system == "" and p.history == () for p in pairs)


def test_missing_columns_are_named():
    with pytest.raises(TrainingDataError, match="output"):
        training_pairs(arm_frame().drop(columns=["output"]))


def test_chat_examples_are_conversational_prompt_completion():
    examples = training_examples(training_pairs(arm_frame(), raw_frame()), tiny_tokenizer())
    assert [e.row_id for e in examples] == ["a", "b"]  # the empty answer has nothing to teach
    first = examples[0]
    assert [m["role"] for m in first.prompt] == ["system", "user", "assistant", "user"]
    assert first.prompt[-1]["content"] == "Q1\n\nin1"  # the scoring template's user turn
    assert first.completion == [{"role": "assistant", "content": "A1"}]


def test_text_template_renders_the_prompt_as_scored():
    examples = training_examples(training_pairs(arm_frame(), raw_frame()), tiny_tokenizer(), "alpaca")
    assert examples[0].prompt.startswith("Below is an instruction") and examples[0].prompt.endswith("### Response:")
    assert "System: Be brief." in examples[0].prompt and "User: earlier" in examples[0].prompt
    assert examples[0].completion == "A1"


def test_unknown_template_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown template"):
        training_examples(training_pairs(arm_frame()), tiny_tokenizer(), "nope")


def test_pairs_come_in_row_id_order_whatever_the_table_order():
    shuffled = arm_frame().iloc[[2, 0, 1]]
    assert [p.row_id for p in training_pairs(shuffled)] == ["a", "b", "c"]
