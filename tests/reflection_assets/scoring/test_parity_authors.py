"""Parity with the authors' released scoring code (Cherry_LLM / Reflection_Tuning
`selection_code/data_analysis.py`), re-implemented faithfully below.

On a tokenizer that adds BOS (the Llama family of the paper) our numbers are theirs. On one that
does not (GPT-2, SmolLM2) only the unconditioned pass differs, and only in the first response
token: their pass leaves it unscored (it becomes the context), ours scores it after the start token.
"""

import pytest
import torch
from scoring_tiny import build_tokenizer, tiny_gpt2, tiny_llama

from reflection_assets.schema import Pair
from reflection_assets.scoring.scorer import ScoringConfig, score_pairs
from reflection_assets.scoring.sequences import Seq
from reflection_assets.scoring.student import Student
from reflection_assets.scoring.templates import ALPACA_INPUT, ALPACA_NO_INPUT

REVERSE = (
    "Below is the response to an instruction, please guess the corresponding instruction for the given response.\n"
)
PAIRS = [
    Pair(instruction="Give three tips for staying healthy .", output="Eat well , sleep enough and exercise daily ."),
    Pair(instruction="Name a colour .", output="Blue is a colour . The cat sleeps ."),
    Pair(instruction="Translate the sentence into French .", input="The cat sleeps .", output="Le chat dort ."),
]


# --- the authors' code path (tokenize the whole text, -100 labels on the prompt part) ----------
def authors_whole_text(tokenizer, model, text, max_length):
    input_ids = tokenizer.encode(text, return_tensors="pt", truncation=True, max_length=max_length)
    with torch.no_grad():
        outputs = model(input_ids, labels=input_ids.contiguous())
    return outputs.loss.item()


def authors_part_text(tokenizer, model, text, target_span, max_length):
    input_ids = tokenizer.encode(text, return_tensors="pt", truncation=True, max_length=max_length)
    start_index = text.rfind(target_span)
    start_token = len(tokenizer.encode(text[:start_index]))
    labels = input_ids.clone()
    labels[0, :start_token] = -100
    with torch.no_grad():
        outputs = model(input_ids, labels=labels)
    return outputs.loss.item()


def authors_losses(tokenizer, model, item: Pair, max_length: int) -> dict[str, float]:
    """[loss_ins_alone, loss_out_alone, loss_ins_condition, loss_out_condition] under the alpaca prompt."""
    instruct, output, input_i = item.instruction, item.output, item.input
    if input_i == "":
        prompt = ALPACA_NO_INPUT.format_map({"instruction": instruct})
    else:
        prompt = ALPACA_INPUT.format_map({"instruction": instruct, "input": input_i})
    whole_text = prompt + output
    instruct_len = tokenizer.encode(prompt, return_tensors="pt", truncation=True, max_length=max_length).shape[1]
    reverse = REVERSE + output + "\nGenerate the instruction for the above response."
    prompt_reverse = ALPACA_NO_INPUT.format_map({"instruction": reverse})
    whole_text_reverse = prompt_reverse + instruct + input_i
    reverse_len = tokenizer.encode(prompt_reverse, return_tensors="pt", truncation=True, max_length=max_length).shape[1]
    return {
        "rloss_alone": authors_whole_text(tokenizer, model, instruct + input_i, max_length - reverse_len + 1),
        "loss_alone": authors_whole_text(tokenizer, model, output, max_length - instruct_len + 1),
        "rloss_cond": authors_part_text(tokenizer, model, whole_text_reverse, instruct, max_length),
        "loss_cond": authors_part_text(tokenizer, model, whole_text, output, max_length),
    }


# --- the tests --------------------------------------------------------------------------------
@pytest.mark.parametrize("max_length", [512, 50])  # 50 truncates the third pair's response
def test_bos_tokenizer_agrees_with_the_authors(max_length):
    tokenizer = build_tokenizer(add_bos=True)
    student = Student(tiny_llama(len(tokenizer)), tokenizer, "tiny")
    ours = score_pairs(PAIRS, student, ScoringConfig(template="alpaca", max_length=max_length))
    truncated = False
    for pair, score in zip(PAIRS, ours):
        theirs = authors_losses(tokenizer, student.model, pair, max_length)
        truncated |= score.n_response_tokens < len(tokenizer.encode(pair.output, add_special_tokens=False))
        assert score.loss_cond == pytest.approx(theirs["loss_cond"], abs=1e-5)
        assert score.loss_alone == pytest.approx(theirs["loss_alone"], abs=1e-5)
        if max_length == 512 and not pair.input:  # they join instruction and input with nothing; we use "\n"
            assert score.rloss_cond == pytest.approx(theirs["rloss_cond"], abs=1e-5)
            assert score.rloss_alone == pytest.approx(theirs["rloss_alone"], abs=1e-5)
    assert truncated == (max_length == 50)


@pytest.mark.parametrize("build", [tiny_gpt2, tiny_llama])
def test_no_bos_tokenizer_differs_only_in_the_first_response_token(build):
    tokenizer = build_tokenizer(add_bos=False)
    student = Student(build(len(tokenizer)), tokenizer, "tiny")
    ours = score_pairs(PAIRS, student, ScoringConfig(template="alpaca", max_length=512))
    for pair, score in zip(PAIRS, ours):
        theirs = authors_losses(tokenizer, student.model, pair, 512)
        response = tuple(tokenizer.encode(pair.output, add_special_tokens=False))
        assert score.loss_cond == pytest.approx(theirs["loss_cond"], abs=1e-5)  # conditioned pass: identical
        # Theirs: the first response token is context, the rest is scored ...
        first_unscored = student.engine.forward([Seq(response[:1], response[1:])])[0].loss
        assert theirs["loss_alone"] == pytest.approx(first_unscored, abs=1e-5)
        # ... ours: every response token is scored after the start token, as in the conditioned pass.
        all_scored = student.engine.forward([Seq((tokenizer.bos_token_id,), response)])[0].loss
        assert score.loss_alone == pytest.approx(all_scored, abs=1e-6)
        assert abs(score.loss_alone - theirs["loss_alone"]) > 1e-4
