"""The in-process teacher (`teacher.local`, through its resource): batching, caps, guided steps, splitting a
failing batch and choose, on tiny models built from configs; one short run of the bundled SmolLM2 (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reflection_assets.schema import Pair
from reflection_assets.teacher.cache import CallCache
from reflection_assets.teacher.outcomes import OUTCOMES
from reflection_assets.teacher.runner import reflect_rows
from reflection_assets.teacher.settings import ReflectionSettings
from reflection_assets.teacher.types import ChatRequest, Sampling
from resources.teacher_local import TransformersTeacher
from support.oom import decoder, simulated_oom
from support.tiny_lm import forced_teacher, tiny_teacher


def requests(n: int, sampling: Sampling) -> list[ChatRequest]:
    # Different lengths, so left padding is exercised.
    return [
        ChatRequest.of([{"role": "user", "content": "Explain photosynthesis. " * (1 + i % 3)}], sampling)
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def tiny() -> TransformersTeacher:
    return tiny_teacher(batch_size=4)


def test_batched_generation_matches_one_at_a_time(tiny: TransformersTeacher) -> None:
    sampling = Sampling(max_new_tokens=6, min_new_tokens=6)
    batched = tiny.complete(requests(6, sampling))
    local = tiny.backend()
    single = [local.generate([local.render(r.message_dicts())], sampling)[0] for r in requests(6, sampling)]
    assert [r.completion_tokens for r in batched] == [6] * 6 and all(r.finish_reason == "length" for r in batched)
    assert [r.prompt_tokens for r in batched] == [s.prompt_tokens for s in single]
    agree = sum(b.text == s.text for b, s in zip(batched, single))
    assert agree >= 5, f"only {agree}/6 greedy outputs agree"


def test_admission_and_result_callbacks(tiny: TransformersTeacher) -> None:
    seen: list[int] = []
    admitted = iter([True, True, False, True, False])
    out = tiny.complete(
        requests(5, Sampling(max_new_tokens=2)), admit=lambda r: next(admitted), on_result=lambda i, r: seen.append(i)
    )
    assert sorted(seen) == list(range(5))
    assert [r.status for r in out].count("skipped") == 2 and sum(r.ok for r in out) == 3


def test_stop_strings_end_generation() -> None:
    teacher = forced_teacher("[End]")
    [result] = teacher.complete(requests(1, Sampling(max_new_tokens=8, stop=("[End]",))))
    assert result.text == "[End]" and result.completion_tokens == 1 and result.finish_reason == "stop"


def test_guided_steps_run_in_process(tmp_path: Path) -> None:
    teacher = forced_teacher("[End]")
    pairs = [Pair("Explain photosynthesis.", "Plants use light.", input="briefly")]
    frame, stats = reflect_rows(
        pairs,
        "instruction",
        teacher,
        CallCache(tmp_path / "c.duckdb"),
        ReflectionSettings(guided=True, critique_tokens=3, max_new_tokens=8),
    )
    raw = frame.iloc[0]["raw_text"]
    assert raw.index("[New Instruction]") < raw.index("[New Answer]") and raw.endswith("[End]")
    assert stats.requests == 3  # critique, instruction section, answer section
    # Sections stopped at once on [End]: empty, so the original pair is kept whole.
    row = frame.iloc[0]
    assert (row["outcome"], row["error"]) == ("parse_failed", "empty_instruction")
    assert (row["new_instruction"], row["new_input"], row["new_output"]) == (
        "Explain photosynthesis.",
        "briefly",
        "Plants use light.",
    )


def test_guided_truncated_section_is_reported(tiny: TransformersTeacher, tmp_path: Path) -> None:
    frame, stats = reflect_rows(
        [Pair("Explain photosynthesis.", "Plants use light.")],
        "instruction",
        tiny,
        CallCache(tmp_path / "c.duckdb"),
        ReflectionSettings(guided=True, critique_tokens=2, max_new_tokens=3),
    )
    # A random model never writes [End]: the plan stops at the first section, unclosed.
    assert frame.iloc[0]["outcome"] == "parse_failed" and stats.requests == 2


def guided_requests(n: int) -> list[ChatRequest]:
    from reflection_assets.teacher.planning import build_request

    settings = ReflectionSettings(guided=True, critique_tokens=4, max_new_tokens=5)
    pairs = [Pair("Explain photosynthesis. " * (1 + i % 3), "Plants use light.") for i in range(n)]
    return [build_request("instruction", p, settings, guided=True) for p in pairs]


def test_engine_equals_the_generate_path(tiny: TransformersTeacher) -> None:
    """Guided plans continued from the cache give today's texts and counts; the prompt is computed once."""
    model, tokenizer = tiny.load()
    earlier = TransformersTeacher.from_loaded(model, tokenizer, name="tiny-llama", batch_size=2, generation="generate")
    engine = TransformersTeacher.from_loaded(model, tokenizer, name="tiny-llama", num_threads=1)
    requests = guided_requests(4) + requests_plain(3)
    old, new = earlier.complete(requests), engine.complete(requests)
    assert [r.text for r in new] == [r.text for r in old]
    assert [(r.prompt_tokens, r.requests, r.finish_reason) for r in new] == [
        (r.prompt_tokens, r.requests, r.finish_reason) for r in old
    ]
    stats = engine.engine().stats
    # Each guided step re-reads its whole context in the earlier path; the engine feeds the prompt once.
    assert stats.prefill_tokens + stats.prefix_tokens < sum(r.prompt_tokens for r in old[:4]) / 2


def requests_plain(n: int) -> list[ChatRequest]:
    return requests(n, Sampling(max_new_tokens=5))


def test_a_running_batch_gives_the_texts_and_counts_of_batches_one_after_another(tiny: TransformersTeacher) -> None:
    """Continuous batching (rows join as others finish; a small budget makes them) changes no greedy text, no
    count, and asks the budget in the same order, so a cap admits the same calls."""
    from reflection_assets.teacher.budget import Budget

    model, tokenizer = tiny.load()
    work = guided_requests(9) + requests_plain(7)
    paths = {
        continuous: TransformersTeacher.from_loaded(
            model, tokenizer, name="tiny-llama", num_threads=1, batch_tokens=200, continuous=continuous
        )
        for continuous in (False, True)
    }
    got = {}
    for continuous, teacher in paths.items():
        budget, reported = Budget(max_calls=12), []
        results = teacher.complete(work, admit=budget.admit, on_result=lambda i, r, seen=reported: seen.append(i))
        got[continuous] = ([outcome(r) for r in results], sorted(reported))
    assert got[True] == got[False]
    assert sum(o[0] == "ok" for o in got[True][0]) == 12 and got[True][1] == list(range(len(work)))
    assert paths[True].engine().stats.joins > 2 and paths[False].engine().stats.joins == 0


def test_sampled_calls_take_the_generate_path(tiny: TransformersTeacher) -> None:
    model, tokenizer = tiny.load()
    teacher = TransformersTeacher.from_loaded(model, tokenizer, name="tiny-llama", num_threads=1)
    sampled = Sampling(max_new_tokens=3, temperature=0.7, seed=1)
    assert not teacher.backend().uses_engine(sampled) and teacher.backend().uses_engine(Sampling())
    assert teacher.complete(requests(2, sampled))[0].ok and teacher.backend()._engine is None


def test_a_failing_row_does_not_fail_its_engine_batch() -> None:
    """A prompt past a GPT-2's 128 learned positions fails alone; its batch neighbours are generated."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from support.tiny_lm import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(tokenizer),
            n_embd=32,
            n_layer=2,
            n_head=2,
            n_positions=128,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    )
    teacher = TransformersTeacher.from_loaded(model, tokenizer, name="tiny-gpt2", num_threads=1)
    too_long = ChatRequest.of(
        [{"role": "user", "content": "Explain photosynthesis. " * 60}], Sampling(max_new_tokens=3)
    )
    out = teacher.complete(requests(3, Sampling(max_new_tokens=3)) + [too_long])
    assert [r.ok for r in out] == [True, True, True, False] and out[3].error.startswith("IndexError")


def test_choose_returns_probabilities() -> None:
    teacher = forced_teacher("[End]")
    probs = teacher.choose([{"role": "user", "content": "Which?"}], ["[End]", "Plants"])
    assert probs[0] > 0.99 and sum(probs) == pytest.approx(1.0)
    assert (teacher.judge_stats.logprobs, teacher.judge_stats.text) == (1, 0)


def test_choose_many_equals_choose_per_question(tiny: TransformersTeacher) -> None:
    """Batched judge questions (left-padded, several lengths; one-token options read from one row,
    longer options a row each) give each question's probabilities as `choose` alone does."""
    from reflection_assets.evaluation.judge import OPTIONS, judge_messages

    model, tokenizer = tiny.load()
    teacher = TransformersTeacher.from_loaded(model, tokenizer, name="tiny-llama", num_threads=1, batch_tokens=300)
    asks = [(judge_messages("Say hi. " * (1 + k % 3), "hi " * k, "hello"), OPTIONS) for k in range(5)]
    asks += [([{"role": "user", "content": "Which plant? " * (1 + k)}], ["Plants use light", "Sun"]) for k in range(3)]
    assert len({len(tokenizer(o, add_special_tokens=False)["input_ids"]) for o in asks[-1][1]}) > 1
    many = teacher.choose_many(asks)
    alone = [teacher.choose(messages, options) for messages, options in asks]
    for got, want in zip(many, alone):
        assert got == pytest.approx(want, abs=1e-5)
    assert teacher.judge_stats.logprobs == 2 * len(asks)


@pytest.mark.slow
def test_bundled_engine_equals_the_generate_path_on_demo_rows(bundled_model) -> None:  # type: ignore[no-untyped-def]
    from reflection_assets.demo_data import DEMO_TRAIN_PATH
    from reflection_assets.ingest.readers import read_dataset
    from reflection_assets.teacher.planning import build_request

    model, tokenizer, fingerprint = bundled_model
    settings = ReflectionSettings(guided=True, critique_tokens=12, max_new_tokens=24)
    requests = [
        build_request("instruction", p, settings, guided=True) for p in read_dataset(DEMO_TRAIN_PATH).accepted[:4]
    ]
    earlier = TransformersTeacher.from_loaded(model, tokenizer, name=fingerprint, generation="generate").complete(
        requests
    )
    engine = TransformersTeacher.from_loaded(model, tokenizer, name=fingerprint, num_threads=1).complete(requests)
    assert [r.text for r in engine] == [r.text for r in earlier]


@pytest.mark.slow
def test_bundled_teacher_reflects_a_row_guided(bundled_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, tokenizer, fingerprint = bundled_model
    teacher = TransformersTeacher.from_loaded(model, tokenizer, name=fingerprint)
    pairs = [Pair("Give two tips for staying healthy.", "Sleep and exercise.")]
    frame, stats = reflect_rows(
        pairs,
        "instruction",
        teacher,
        CallCache(tmp_path / "c.duckdb"),
        ReflectionSettings(guided=True, critique_tokens=12, max_new_tokens=24),
    )
    assert frame.iloc[0]["outcome"] in OUTCOMES and frame.iloc[0]["outcome"] != "teacher_error"
    assert "[New Instruction]" in frame.iloc[0]["raw_text"] and 2 <= stats.requests <= 3
    assert stats.completion_tokens > 0


def outcome(r) -> tuple:  # type: ignore[no-untyped-def]
    return r.status, r.text, r.prompt_tokens, r.completion_tokens, r.requests, r.finish_reason


def test_an_out_of_memory_engine_batch_is_halved_after_the_except_block(tiny: TransformersTeacher) -> None:
    """Batches over one row run out of memory: the halves are retried outside the except block (see
    support.oom: no exception in flight, the failed forward's tensors gone) and give the unsplit results."""
    model, tokenizer = tiny.load()
    work = guided_requests(3) + requests_plain(3)
    want = TransformersTeacher.from_loaded(model, tokenizer, name="tiny-llama", num_threads=1).complete(work)
    teacher = TransformersTeacher.from_loaded(model, tokenizer, name="tiny-llama", num_threads=1)
    with simulated_oom(decoder(model), max_rows=1) as oom:
        got = teacher.complete(work)
    assert oom.failures >= 2 and oom.retries > 0  # both batches (guided, plain) failed whole, then in halves
    assert all(r.ok for r in got) and [outcome(r) for r in got] == [outcome(r) for r in want]


def test_a_single_row_out_of_memory_is_an_error_result_and_memory_is_freed_after_the_except(
    tiny: TransformersTeacher, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    import reflection_assets.teacher.local as teacher_local

    model, tokenizer = tiny.load()
    freed: list[tuple] = []
    monkeypatch.setattr(teacher_local, "free_cuda_memory", lambda: freed.append(sys.exc_info()))
    engine = TransformersTeacher.from_loaded(model, tokenizer, name="tiny-llama", num_threads=1)
    earlier = TransformersTeacher.from_loaded(model, tokenizer, name="tiny-llama", generation="generate")
    with simulated_oom(decoder(model), max_rows=0):
        [alone] = engine.complete(requests_plain(1))
        both = earlier.complete(requests_plain(2))  # the generate path: the batch fails as one, as before
    for result in [alone, *both]:
        assert result.status == "error" and result.error.startswith("OutOfMemoryError: CUDA out of memory")
    assert freed == [(None, None, None)] * 2  # once per failed batch, each after its except block
