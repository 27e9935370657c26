import pytest

from reflection_assets.schema import Pair, Turn
from reflection_assets.scoring import statuses
from reflection_assets.scoring.sequences import instruction_text, plan_ifd, plan_rifd, resolve_settings
from reflection_assets.scoring.templates import REVERSE_PROMPT, prompt_ids

PAIR = Pair(instruction="Give three tips for staying healthy .", output="Eat well , sleep enough and exercise daily .")


def ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_ifd_appends_response_ids_to_prompt_ids(bos_tokenizer):
    settings = resolve_settings(bos_tokenizer, "alpaca", "bos", 512)
    plan = plan_ifd(bos_tokenizer, settings, PAIR)
    assert plan.status == statuses.OK
    assert (
        list(plan.cond.context)
        == bos_tokenizer(
            "Below is an instruction that describes a task. Write a response that "
            "appropriately completes the request.\n\n### Instruction:\n" + PAIR.instruction + "\n\n### Response:"
        )["input_ids"]
    )
    assert list(plan.cond.scored) == ids(bos_tokenizer, PAIR.output)
    assert plan.alone.context == (bos_tokenizer.bos_token_id,) and plan.alone.scored == plan.cond.scored
    assert plan.n_scored == len(ids(bos_tokenizer, PAIR.output))


def test_start_token_is_bos_even_when_the_tokenizer_does_not_add_it(nobos_tokenizer):
    settings = resolve_settings(nobos_tokenizer, "alpaca", "bos", 512)
    assert settings.start == (nobos_tokenizer.bos_token_id,)
    assert resolve_settings(nobos_tokenizer, "alpaca", "eos", 512).start == (nobos_tokenizer.eos_token_id,)


def test_truncation_keeps_the_prompt_and_cuts_the_response(bos_tokenizer):
    prompt = prompt_ids(bos_tokenizer, "alpaca", PAIR.instruction)
    settings = resolve_settings(bos_tokenizer, "alpaca", "bos", len(prompt) + 3)
    plan = plan_ifd(bos_tokenizer, settings, PAIR)
    assert plan.status == statuses.OK
    assert list(plan.cond.context) == prompt
    assert list(plan.cond.scored) == ids(bos_tokenizer, PAIR.output)[:3]
    assert plan.cond.length == settings.max_length and plan.alone.scored == plan.cond.scored


@pytest.mark.parametrize("extra", [0, -5])
def test_prompt_too_long_when_the_prompt_fills_max_length(bos_tokenizer, extra):
    prompt = prompt_ids(bos_tokenizer, "alpaca", PAIR.instruction)
    settings = resolve_settings(bos_tokenizer, "alpaca", "bos", len(prompt) + extra)
    plan = plan_ifd(bos_tokenizer, settings, PAIR)
    assert plan.status == statuses.PROMPT_TOO_LONG and plan.cond is None and plan.n_scored is None


@pytest.mark.parametrize(
    "pair, ifd_status, rifd_status",
    [
        (Pair(instruction="Name a colour .", output="  "), statuses.EMPTY_RESPONSE, statuses.EMPTY_RESPONSE),
        (Pair(instruction=" ", output="Blue ."), statuses.EMPTY_INSTRUCTION, statuses.EMPTY_INSTRUCTION),
        (Pair(instruction="", output=""), statuses.EMPTY_RESPONSE, statuses.EMPTY_INSTRUCTION),
    ],
)
def test_empty_statuses(bos_tokenizer, pair, ifd_status, rifd_status):
    settings = resolve_settings(bos_tokenizer, "alpaca", "bos", 512)
    assert plan_ifd(bos_tokenizer, settings, pair).status == ifd_status
    assert plan_rifd(bos_tokenizer, settings, pair).status == rifd_status


def test_response_that_tokenizes_to_nothing_is_empty():
    class Silent:
        bos_token_id, eos_token_id = 0, 1

        def __call__(self, text, add_special_tokens=True):
            return {"input_ids": [0] if add_special_tokens else []}

    settings = resolve_settings(Silent(), "alpaca", "bos", 64)
    assert plan_ifd(Silent(), settings, PAIR).status == statuses.EMPTY_RESPONSE
    assert plan_rifd(Silent(), settings, PAIR).status == statuses.EMPTY_INSTRUCTION


def test_template_errors_become_error_statuses():
    from scoring_tiny import build_tokenizer

    strict = build_tokenizer(add_bos=False, chat=True)
    strict.chat_template = (
        "{% if messages|length > 1 %}{{ raise_exception('roles must alternate') }}{% endif %}" + strict.chat_template
    )
    settings = resolve_settings(strict, "chat", "bos", 512)
    pair = Pair(instruction="Name a colour .", output="Blue .", history=(Turn("user", "one"),))
    assert plan_ifd(strict, settings, pair).status == "error:TemplateError"
    assert plan_rifd(strict, settings, pair).status == "error:TemplateError"
    assert plan_ifd(strict, settings, Pair(instruction="Name a colour .", output="Blue .")).status == statuses.OK


def test_rifd_scores_instruction_and_input_joined_by_newline(bos_tokenizer):
    pair = Pair(instruction="Translate the sentence into French .", input="The cat sleeps .", output="Le chat dort .")
    assert instruction_text(pair) == "Translate the sentence into French .\nThe cat sleeps ."
    settings = resolve_settings(bos_tokenizer, "alpaca", "bos", 512)
    plan = plan_rifd(bos_tokenizer, settings, pair)
    assert plan.status == statuses.OK
    assert list(plan.cond.scored) == ids(bos_tokenizer, instruction_text(pair))
    reverse = REVERSE_PROMPT.format(response=pair.output)
    assert list(plan.cond.context) == prompt_ids(bos_tokenizer, "alpaca", reverse)
    assert plan.alone == type(plan.alone)((bos_tokenizer.bos_token_id,), plan.cond.scored)


def test_rifd_cuts_a_long_response_inside_the_reverse_prompt(bos_tokenizer):
    long_pair = Pair(instruction="Name a colour .", output=" ".join(["one two three four five"] * 40))
    settings = resolve_settings(bos_tokenizer, "alpaca", "bos", 80)
    plan = plan_rifd(bos_tokenizer, settings, long_pair)
    assert plan.status == statuses.OK
    assert list(plan.cond.scored) == ids(bos_tokenizer, "Name a colour .")  # the instruction is whole
    assert plan.cond.length <= 80
    text = bos_tokenizer.decode(plan.cond.context)
    assert "one two three" in text  # part of the response is shown ...
    assert len(plan.cond.context) < len(
        prompt_ids(bos_tokenizer, "alpaca", REVERSE_PROMPT.format(response=long_pair.output))
    )
    assert text.endswith("Generate the instruction for the above response . ### Response :")  # ... inside the prompt


def test_rifd_long_instruction_keeps_half_the_room_for_the_response(bos_tokenizer):
    pair = Pair(instruction=" ".join(["six seven"] * 60), output=" ".join(["one two"] * 60))
    settings = resolve_settings(bos_tokenizer, "alpaca", "bos", 100)
    plan = plan_rifd(bos_tokenizer, settings, pair)
    bare = prompt_ids(bos_tokenizer, "alpaca", REVERSE_PROMPT.format(response=""))
    room = 100 - len(bare)
    assert plan.status == statuses.OK and plan.cond.length == 100
    assert len(plan.cond.context) - len(bare) == room // 2
    assert len(plan.cond.scored) == 100 - len(plan.cond.context)


def test_rifd_prompt_too_long_when_even_the_bare_reverse_prompt_does_not_fit(bos_tokenizer):
    bare = prompt_ids(bos_tokenizer, "alpaca", REVERSE_PROMPT.format(response=""))
    settings = resolve_settings(bos_tokenizer, "alpaca", "bos", len(bare))
    assert plan_rifd(bos_tokenizer, settings, PAIR).status == statuses.PROMPT_TOO_LONG


def test_settings_reject_tiny_max_length(bos_tokenizer):
    with pytest.raises(ValueError, match="max_length"):
        resolve_settings(bos_tokenizer, "alpaca", "bos", 1)
