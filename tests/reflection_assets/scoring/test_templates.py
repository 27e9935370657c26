import pytest

from reflection_assets.schema import Turn
from reflection_assets.scoring import templates as T


def test_default_template_prefers_the_students_chat_template(chat_tokenizer, bos_tokenizer):
    assert T.default_template(chat_tokenizer) == "chat"
    assert T.default_template(bos_tokenizer) == "alpaca"


def test_check_template_rejects_unknown_and_chat_without_template(bos_tokenizer):
    with pytest.raises(ValueError, match="unknown template"):
        T.check_template("llama9", bos_tokenizer)
    with pytest.raises(ValueError, match="chat template"):
        T.check_template("chat", bos_tokenizer)


def test_alpaca_renders_the_standard_prompt_with_and_without_input():
    assert T.render_text("alpaca", "Name a colour.") == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nName a colour.\n\n### Response:"
    )
    with_input = T.render_text("alpaca", "Translate.", "The cat sleeps.")
    assert "paired with an input" in with_input
    assert with_input.endswith("### Instruction:\nTranslate.\n\n### Input:\nThe cat sleeps.\n\n### Response:")


def test_vicuna_and_plain():
    assert T.render_text("vicuna", "Hi").endswith(" USER: Hi ASSISTANT:")
    assert T.render_text("vicuna", "Hi", "x").endswith(" USER: Hi\nInput:\nx ASSISTANT:")
    assert T.render_text("plain", "Hi") == "Hi\n"
    assert T.render_text("plain", "Hi", "x") == "Hi\nx\n"


def test_history_becomes_a_transcript_under_text_templates():
    text = T.render_text(
        "alpaca", "And now?", system="Be brief.", history=(Turn("user", "Hi"), Turn("assistant", "Hello"))
    )
    assert "### Instruction:\nSystem: Be brief.\nUser: Hi\nAssistant: Hello\n\nAnd now?\n\n### Response:" in text


def test_chat_prompt_ids_come_straight_from_apply_chat_template(chat_tokenizer):
    history = (Turn("user", "one"), Turn("assistant", "two"))
    ids = T.prompt_ids(chat_tokenizer, "chat", "three", "four", system="five", history=history)
    messages = [
        {"role": "system", "content": "five"},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "two"},
        {"role": "user", "content": "three\n\nfour"},
    ]
    expected = chat_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    expected = expected["input_ids"] if hasattr(expected, "keys") else expected
    assert ids == list(expected)
    assert chat_tokenizer.decode(ids[-3:]) == "<s> assistant :"


def test_text_prompt_ids_use_special_tokens(bos_tokenizer, nobos_tokenizer):
    assert T.prompt_ids(bos_tokenizer, "alpaca", "Name a colour .")[0] == bos_tokenizer.bos_token_id
    assert T.prompt_ids(nobos_tokenizer, "alpaca", "Name a colour .")[0] != nobos_tokenizer.bos_token_id


def test_start_ids(chat_tokenizer, bos_tokenizer):
    assert T.start_ids(bos_tokenizer, "alpaca", "bos") == [bos_tokenizer.bos_token_id]
    assert T.start_ids(bos_tokenizer, "alpaca", "eos") == [bos_tokenizer.eos_token_id]
    header = T.start_ids(bos_tokenizer, "alpaca", "header")
    assert header == bos_tokenizer("### Response:")["input_ids"] and header[0] == bos_tokenizer.bos_token_id
    assert chat_tokenizer.decode(T.start_ids(chat_tokenizer, "chat", "header")) == "<s> assistant :"
    with pytest.raises(ValueError, match="no response header"):
        T.start_ids(bos_tokenizer, "plain", "header")
    with pytest.raises(ValueError, match="unknown start token"):
        T.start_ids(bos_tokenizer, "alpaca", "cls")


def test_start_falls_back_to_eos_without_bos(nobos_tokenizer):
    class NoBos:
        bos_token_id = None
        eos_token_id = 3

    assert T.start_ids(NoBos(), "alpaca", "bos") == [3]


def test_template_hash_tracks_template_and_start(chat_tokenizer):
    hashes = {T.template_hash(chat_tokenizer, name, start) for name in ("alpaca", "chat") for start in ("bos", "eos")}
    assert len(hashes) == 4
    assert T.template_hash(chat_tokenizer, "chat", "bos") == T.template_hash(chat_tokenizer, "chat", "bos")


def test_template_hash_survives_a_template_that_refuses_system_turns():
    from scoring_tiny import build_tokenizer

    strict = build_tokenizer(add_bos=False, chat=True)
    strict.chat_template = (
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
        + strict.chat_template
    )
    assert len(T.template_hash(strict, "chat", "bos")) == 20
