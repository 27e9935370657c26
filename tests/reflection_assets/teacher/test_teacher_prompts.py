"""Prompts: the layout is asked for, the input is folded in, the version is keyed."""

from __future__ import annotations

import pytest

from reflection_assets.schema import Pair, Turn
from reflection_assets.teacher import prompts
from reflection_assets.teacher.cache import call_key
from reflection_assets.teacher.planning import build_request
from reflection_assets.teacher.settings import ReflectionSettings


def test_instruction_prompt_asks_for_every_criterion_and_the_layout() -> None:
    user = prompts.instruction_messages(Pair("Sort the list.", "1, 2, 3", input="3, 1, 2"))[-1]["content"]
    for word in ("complex", "detail", "knowledge", "ambiguous", "reasoning", "helpful", "relevant", "accurate"):
        assert word in user
    assert user.index("[New Instruction]") < user.index("[New Answer]")
    assert "stand on its own" in user
    assert "Sort the list.\n\n3, 1, 2" in user  # the input is folded into the instruction shown


def test_response_prompt_asks_for_a_better_answer() -> None:
    user = prompts.response_messages(Pair("Q?", "A."))[-1]["content"]
    assert "[Better Answer]" in user and "[New Instruction]" not in user


def test_history_and_system_are_shown() -> None:
    pair = Pair(
        "And in French?", "Bonjour", system="Be brief.", history=(Turn("user", "Say hello"), Turn("assistant", "Hello"))
    )
    text = prompts.render_pair(pair)
    assert "Be brief." in text and "User: Say hello" in text and "Assistant: Hello" in text


def test_fold_input() -> None:
    assert prompts.fold_input(" Q ", "") == "Q"
    assert prompts.fold_input("Q", " data ") == "Q\n\ndata"


def test_prompt_version_and_sampling_change_the_key() -> None:
    pair, identity = Pair("Q?", "A."), {"backend": "openai", "model": "m"}
    base = build_request("instruction", pair, ReflectionSettings(), guided=False)
    key = call_key(identity, "v1", base)
    assert key == call_key(identity, "v1", build_request("instruction", pair, ReflectionSettings(), guided=False))
    assert key != call_key(identity, "v2", base)
    assert key != call_key(
        identity, "v1", build_request("instruction", pair, ReflectionSettings(temperature=0.7), guided=False)
    )
    assert key != call_key(identity, "v1", build_request("instruction", pair, ReflectionSettings(), guided=True))
    assert key != call_key({"backend": "openai", "model": "other"}, "v1", base)
    # Caps, limit and batching decide how much is done, not what an answer is.
    assert key == call_key(
        identity, "v1", build_request("instruction", pair, ReflectionSettings(max_calls=3, limit=1), guided=False)
    )


def test_unknown_stage() -> None:
    with pytest.raises(ValueError):
        prompts.messages_for("critique", Pair("Q", "A"))  # type: ignore[arg-type]
