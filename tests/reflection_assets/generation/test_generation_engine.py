"""The generation engine against model.generate on tiny models built from configs (fp32, exact greedy)."""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch

from reflection_assets.generation.cache import GrowingLayer
from reflection_assets.generation.engine import (
    GenerationEngine,
    GenerationOutOfMemoryError,
    GenerationRequest,
    NextStep,
    StepResult,
    default_threads,
)
from support.oom import decoder, simulated_oom
from support.tiny_lm import tiny_model, tiny_tokenizer

PROMPTS = [
    "Explain photosynthesis.",
    "Plants use light. " * 3,
    "Explain photosynthesis. Plants use light. " * 2,
    "[End]",
]


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    tokenizer = tiny_tokenizer()
    return tiny_model(tokenizer, seed=3), tokenizer


def prompt_ids(tokenizer: Any, text: str) -> tuple[int, ...]:
    rendered = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief and exact, always."}, {"role": "user", "content": text}],
        add_generation_prompt=True,
        tokenize=False,
    )
    return tuple(tokenizer(rendered, add_special_tokens=False)["input_ids"])


def reference(model: Any, tok: Any, ids: tuple[int, ...], new_tokens: int, **kwargs: Any) -> list[int]:
    """One prompt alone through model.generate (no padding): the greedy tokens the engine must give."""
    with torch.inference_mode():
        out = model.generate(
            torch.tensor([ids]),
            max_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
            temperature=None,
            top_p=None,
            top_k=None,
            **kwargs,
        )
    return out[0, len(ids) :].tolist()


def test_batch_equals_generate_one_at_a_time(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    engine = GenerationEngine(model, tokenizer, num_threads=torch.get_num_threads())
    requests = [GenerationRequest(prompt_ids(tokenizer, p), 12, min_new_tokens=12) for p in PROMPTS]
    outputs = engine.generate(requests)
    for request, output in zip(requests, outputs):
        assert list(output.token_ids) == reference(model, tokenizer, request.prompt_ids, 12, min_new_tokens=12)
        assert (output.new_tokens, output.finish_reason, output.prompt_tokens) == (
            12,
            "length",
            len(request.prompt_ids),
        )
    # The system turn is common to all four prompts: computed once, copied into every row.
    shared = engine.stats.prefix_tokens
    assert shared >= 8 and engine.stats.prefix_tokens_reused == shared * len(PROMPTS)
    assert engine.stats.prefill_tokens == sum(len(r.prompt_ids) for r in requests) - shared * len(PROMPTS)


def test_shared_prefix_changes_no_output(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    requests = [GenerationRequest(prompt_ids(tokenizer, p), 10) for p in PROMPTS]
    shared = GenerationEngine(model, tokenizer, num_threads=torch.get_num_threads())
    alone = GenerationEngine(model, tokenizer, num_threads=torch.get_num_threads(), share_prefix=False)
    assert shared.generate(requests) == alone.generate(requests)
    assert alone.stats.prefix_tokens == 0 and shared.stats.computed_tokens < alone.stats.computed_tokens


def test_token_budget_batches_sorted_by_length(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    engine = GenerationEngine(model, tokenizer, batch_tokens=100, num_threads=torch.get_num_threads())
    lengths = [30, 10, 50, 20, 45, 12]
    batches = engine.plan_lengths(lengths)
    assert sorted(i for b in batches for i in b) == list(range(6))
    for batch in batches:
        assert len(batch) * max(lengths[i] for i in batch) <= 100 or len(batch) == 1
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat, reverse=True)


def test_each_batch_is_handed_over_as_it_finishes(tiny: tuple[Any, Any]) -> None:
    """`on_batch` sees every request once, a batch at a time, before the next batch starts."""
    model, tokenizer = tiny
    engine = GenerationEngine(model, tokenizer, batch_tokens=40, num_threads=torch.get_num_threads(), continuous=False)
    requests = [GenerationRequest(prompt_ids(tokenizer, p), 6) for p in PROMPTS]
    seen: list[tuple[list[int], list]] = []
    outputs = engine.generate(requests, on_batch=lambda indices, done: seen.append((list(indices), list(done))))
    assert len(seen) == len(engine.plan(requests)) > 1
    assert sorted(i for indices, _ in seen for i in indices) == list(range(len(PROMPTS)))
    for indices, done in seen:
        assert [outputs[i] for i in indices] == done


def test_stop_strings_and_end_tokens_stop_where_generate_does(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    engine = GenerationEngine(model, tokenizer, num_threads=torch.get_num_threads())
    ids = prompt_ids(tokenizer, PROMPTS[0])
    free = reference(model, tokenizer, ids, 20)
    stop = tokenizer.decode(free[3:5])  # a string the model writes at its 4th-5th tokens
    [output] = engine.generate([GenerationRequest(ids, 20, stop=(stop,))])
    expected = reference(model, tokenizer, ids, 20, stop_strings=[stop], tokenizer=tokenizer)
    expected = expected[: next((i + 1 for i, t in enumerate(expected) if t in engine.enders), len(expected))]
    assert list(output.token_ids) == expected and output.finish_reason == "stop" and stop in output.text


def test_min_new_tokens_masks_only_what_generate_masks() -> None:
    """Before min_new_tokens, generate masks the generation config's EOS only: a pad token it picks there is
    kept and generation goes on. The engine masked every end token (pad too) and took the runner-up instead
    (the GPU check's partings: random tiny Llamas whose greedy choice was <pad>, margins up to ~1 logit)."""
    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer, seed=3)
    pad = tokenizer.pad_token_id
    assert pad not in (model.generation_config.eos_token_id, tokenizer.eos_token_id)
    ids = [prompt_ids(tokenizer, p) for p in PROMPTS]
    token = reference(model, tokenizer, ids[0], 10, min_new_tokens=10)[1]  # the first row's second choice
    with torch.no_grad():  # the pad's head row: that token's, a little longer, so greedy picks pad instead of it
        model.lm_head.weight[pad] = 1.1 * model.lm_head.weight[token]
    expected = [reference(model, tokenizer, row, 10, min_new_tokens=10) for row in ids]
    assert all(0 < row.index(pad) < 9 for row in expected if pad in row) and sum(pad in row for row in expected) >= 2
    for continuous in (True, False):
        engine = GenerationEngine(model, tokenizer, num_threads=torch.get_num_threads(), continuous=continuous)
        outputs = engine.generate([GenerationRequest(row, 10, min_new_tokens=10) for row in ids])
        assert [list(o.token_ids) for o in outputs] == expected
        assert all(o.new_tokens == 10 and o.finish_reason == "length" for o in outputs)
    # Past min_new_tokens a pad still ends the row, as the teacher's generate path cuts its output there.
    [free] = GenerationEngine(model, tokenizer, num_threads=torch.get_num_threads()).generate(
        [GenerationRequest(ids[0], 10)]
    )
    unforced = reference(model, tokenizer, ids[0], 10)
    assert list(free.token_ids) == unforced[: next((i + 1 for i, t in enumerate(unforced) if t == pad), 10)]


def test_continuation_reuses_the_cache_and_equals_a_fresh_start(tiny: tuple[Any, Any]) -> None:
    """A second step continues from the cache: kept tokens are not recomputed, changed ones are masked out."""
    model, tokenizer = tiny
    ids = prompt_ids(tokenizer, PROMPTS[1])
    marker = tuple(tokenizer("\n[End]\n", add_special_tokens=False)["input_ids"])
    seen: list[StepResult] = []

    def then(result: StepResult) -> NextStep | None:
        seen.append(result)
        if len(seen) > 1:
            return None
        # Drop the last generated token (as a re-tokenization at the join might) and append a marker.
        return NextStep(ids + result.token_ids[:-2] + marker, 6)

    engine = GenerationEngine(model, tokenizer, num_threads=torch.get_num_threads())
    [output] = engine.generate([GenerationRequest(ids, 5, min_new_tokens=5, continuation=then)])
    second = ids + seen[0].token_ids[:-2] + marker
    assert list(output.token_ids) == reference(model, tokenizer, second, 6)
    assert output.steps == 2 and output.prompt_tokens == len(ids) + len(second) and output.new_tokens == 5 + 6
    # Fed: the prompt once, 4 generated tokens fed back, then only the marker; one cached token was masked out.
    assert engine.stats.prefill_tokens == len(ids) + len(marker)
    assert engine.stats.rollback_tokens == 1


def test_threads_default_to_the_available_cores(tiny: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    model, tokenizer = tiny
    before = torch.get_num_threads()
    try:
        GenerationEngine(model, tokenizer, num_threads=1)
        assert torch.get_num_threads() == 1
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        GenerationEngine(model, tokenizer)
        assert torch.get_num_threads() == default_threads() == len(os.sched_getaffinity(0))
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        GenerationEngine(model, tokenizer)
        assert torch.get_num_threads() == default_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_growing_layer_matches_dynamic_layer() -> None:
    from transformers.cache_utils import DynamicLayer

    torch.manual_seed(0)
    growing, dynamic = GrowingLayer(), DynamicLayer()
    for width in (5, 1, 300, 1, 7):
        k, v = torch.randn(3, 2, width, 4), torch.randn(3, 2, width, 4)
        a, b = growing.update(k, v), dynamic.update(k, v)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    keep = torch.tensor([2, 0])
    growing.batch_select_indices(keep)
    dynamic.batch_select_indices(keep)
    assert torch.equal(growing.keys, dynamic.keys) and growing.get_seq_length() == dynamic.get_seq_length() == 314
    k, v = torch.randn(2, 2, 1, 4), torch.randn(2, 2, 1, 4)
    assert torch.equal(growing.update(k, v)[1], dynamic.update(k, v)[1])


def test_requests_are_checked(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    engine = GenerationEngine(model, tokenizer, num_threads=torch.get_num_threads())
    with pytest.raises(ValueError, match="not a PeftModel"):
        engine.generate([GenerationRequest((1, 2, 3), 2, adapter="a")])
    with pytest.raises(ValueError, match="at least one prompt token"):
        engine.generate([GenerationRequest((), 2)])


def oom_requests(tokenizer: Any) -> list[GenerationRequest]:
    """Eight prompts of different lengths, each planned to the same length (so batch sizes are easy to predict)."""
    prompts = [prompt_ids(tokenizer, p) for p in PROMPTS + ["Plants.", "Light? " * 4, "[End] " * 3, "Explain."]]
    longest = max(len(p) for p in prompts)
    return [GenerationRequest(p, longest + 6 - len(p)) for p in prompts]


def test_an_out_of_memory_batch_is_halved_after_the_except_block(tiny: tuple[Any, Any]) -> None:
    """Batches over two rows run out of memory: they are halved outside the except block (see support.oom:
    no exception in flight, the failed forward's tensors gone), the batches not yet started are planned
    again under a lower budget, every request is handed over once, and the outputs are the unsplit ones."""
    model, tokenizer = tiny
    requests = oom_requests(tokenizer)
    threads = torch.get_num_threads()
    want = GenerationEngine(model, tokenizer, num_threads=threads).generate(requests)
    engine = GenerationEngine(model, tokenizer, num_threads=threads, continuous=False)
    budget, seen = engine.batch_tokens, []
    with simulated_oom(decoder(model), max_rows=2) as oom:
        got = engine.generate(requests, on_batch=lambda indices, done: seen.append((list(indices), list(done))))
    assert got == want
    assert sorted(i for indices, _ in seen for i in indices) == list(range(len(requests)))  # each once
    assert all(len(indices) <= 2 and [got[i] for i in indices] == done for indices, done in seen)
    assert oom.failed_rows[:2] == [8, 4] and oom.retries > 0
    assert engine.stats.out_of_memory_splits == oom.failures and engine.batch_tokens < budget
    assert len(oom.failed_rows) == 2  # the second half of the 8 was re-planned under the lower budget: no failure
    assert [len(indices) for indices, _ in seen] == [2, 2, 2, 2]


def test_a_running_batch_out_of_memory_starts_again_under_half_the_budget(tiny: tuple[Any, Any]) -> None:
    """Continuous batching: the rows in flight go back to the queue, the budget halves until they fit,
    rows already handed over are not run again, and the outputs are those without the failures."""
    model, tokenizer = tiny
    requests = oom_requests(tokenizer)
    threads = torch.get_num_threads()
    want = GenerationEngine(model, tokenizer, num_threads=threads, continuous=False).generate(requests)
    engine = GenerationEngine(model, tokenizer, num_threads=threads)
    budget, seen, asked = engine.batch_tokens, [], []
    with simulated_oom(decoder(model), max_rows=2) as oom:
        got = engine.generate(
            requests,
            on_batch=lambda indices, done: seen.append((list(indices), list(done))),
            admit=lambda i: asked.append(i) or True,
        )
    assert got == want
    assert sorted(i for indices, _ in seen for i in indices) == list(range(len(requests)))  # each once
    assert sorted(asked) == list(range(len(requests)))  # a rerun row is not admitted (paid for) twice
    assert oom.failed_rows[:2] == [8, 4] and oom.retries > 0
    assert engine.stats.out_of_memory_splits == oom.failures == 2 and engine.batch_tokens < budget


def test_a_request_out_of_memory_alone_raises_a_clear_error(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    engine = GenerationEngine(model, tokenizer, num_threads=torch.get_num_threads())
    seen: list[list[int]] = []
    with simulated_oom(decoder(model), max_rows=0), pytest.raises(GenerationOutOfMemoryError, match="request alone"):
        engine.generate(oom_requests(tokenizer)[:2], on_batch=lambda indices, done: seen.append(indices))
    assert seen == []


def test_a_batch_with_continuations_is_not_rerun_after_out_of_memory(tiny: tuple[Any, Any]) -> None:
    """A continuation keeps state (a guided plan's sections): rerunning its batch would apply steps twice."""
    model, tokenizer = tiny
    engine = GenerationEngine(model, tokenizer, num_threads=torch.get_num_threads())
    requests = [GenerationRequest(r.prompt_ids, 3, continuation=lambda result: None) for r in oom_requests(tokenizer)]
    with simulated_oom(decoder(model), max_rows=2), pytest.raises(GenerationOutOfMemoryError, match="continuations"):
        engine.generate(requests)


def test_the_default_budget_comes_from_the_device(tiny: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import reflection_assets.generation.engine as engine_module
    from reflection_assets.devices import CPU_GENERATION_TOKENS

    model, tokenizer = tiny
    assert GenerationEngine(model, tokenizer, num_threads=1).batch_tokens == CPU_GENERATION_TOKENS
    asked: list[tuple] = []
    monkeypatch.setattr(engine_module, "generation_token_budget", lambda m, d: asked.append((m, d)) or 4321)
    assert GenerationEngine(model, tokenizer, num_threads=1).batch_tokens == 4321
    assert asked == [(model, torch.device("cpu"))]
    assert GenerationEngine(model, tokenizer, batch_tokens=99, num_threads=1).batch_tokens == 99 and len(asked) == 1


def staggered_requests(tokenizer: Any) -> list[GenerationRequest]:
    """Twelve prompts whose rows end at different steps (lengths 3..14), so rows leave a running batch
    one by one and waiting ones join it."""
    texts = [p + suffix for p in PROMPTS for suffix in ("", " Why?", " Say it twice.")]
    return [GenerationRequest(prompt_ids(tokenizer, t), 3 + k, min_new_tokens=3 + k) for k, t in enumerate(texts)]


def test_continuous_batching_gives_the_outputs_of_batches_run_one_after_another(
    tiny: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Greedy outputs are identical (token for token) to today's batch-at-a-time path and to one prompt
    alone through model.generate; rows joined the running batch several times and dead cache columns
    were dropped on the way."""
    import reflection_assets.generation.engine as engine_module

    model, tokenizer = tiny
    monkeypatch.setattr(engine_module, "DEAD_COLUMNS", 4)  # the tiny prompts leave few dead columns
    requests = staggered_requests(tokenizer)
    budget = 4 * max(r.planned_length() for r in requests)  # four rows at a time
    threads = torch.get_num_threads()
    batches = GenerationEngine(model, tokenizer, batch_tokens=budget, num_threads=threads, continuous=False)
    running = GenerationEngine(model, tokenizer, batch_tokens=budget, num_threads=threads)
    seen: list[int] = []
    got = running.generate(requests, on_batch=lambda indices, done: seen.extend(indices))
    assert got == batches.generate(requests)
    assert sorted(seen) == list(range(len(requests)))  # each handed over once
    for request, output in list(zip(requests, got))[::4]:
        assert list(output.token_ids) == reference(
            model, tokenizer, request.prompt_ids, request.max_new_tokens, min_new_tokens=request.min_new_tokens
        )
    assert running.stats.joins > 2 and running.stats.compactions >= 1
    # Fewer forwards than batches that wait for their longest row: rows that finish make room at once.
    assert running.stats.forward_calls < batches.stats.forward_calls


def test_continuations_in_a_running_batch_equal_the_batch_path(tiny: tuple[Any, Any]) -> None:
    """Guided-style requests (a second step after a marker) give the same tokens when rows join and leave."""
    model, tokenizer = tiny
    marker = tuple(tokenizer("\n[End]\n", add_special_tokens=False)["input_ids"])

    class MarkerThenStop:
        """A second step after a marker (the last generated token dropped, as a re-tokenization might), then done."""

        def __init__(self, ids: tuple[int, ...]) -> None:
            self.ids, self.steps = ids, 0

        def __call__(self, result: StepResult) -> NextStep | None:
            self.steps += 1
            return NextStep(self.ids + result.token_ids[:-1] + marker, 4) if self.steps == 1 else None

    def requests() -> list[GenerationRequest]:
        made = staggered_requests(tokenizer)
        return [
            GenerationRequest(r.prompt_ids, r.max_new_tokens, continuation=MarkerThenStop(r.prompt_ids)) for r in made
        ]

    budget = 3 * max(r.planned_length() for r in requests())
    threads = torch.get_num_threads()
    batches = GenerationEngine(model, tokenizer, batch_tokens=budget, num_threads=threads, continuous=False)
    running = GenerationEngine(model, tokenizer, batch_tokens=budget, num_threads=threads)
    got = running.generate(requests())
    assert got == batches.generate(requests()) and all(o.steps == 2 for o in got)
    assert running.stats.joins > 2


def test_admit_is_asked_as_each_request_starts(tiny: tuple[Any, Any]) -> None:
    """A refused request has no output and is not handed over; the others run as without it."""
    model, tokenizer = tiny
    requests = staggered_requests(tokenizer)[:6]
    threads = torch.get_num_threads()
    budget = 2 * max(r.planned_length() for r in requests)
    asked: list[int] = []
    seen: list[int] = []

    def admit(index: int) -> bool:
        asked.append(index)
        return index % 2 == 0

    for continuous in (True, False):
        asked.clear(), seen.clear()
        engine = GenerationEngine(model, tokenizer, batch_tokens=budget, num_threads=threads, continuous=continuous)
        got = engine.generate(requests, on_batch=lambda indices, done: seen.extend(indices), admit=admit)
        assert sorted(asked) == list(range(6)) and sorted(seen) == [0, 2, 4]
        assert [o is None for o in got] == [False, True] * 3
        assert got[::2] == GenerationEngine(model, tokenizer, num_threads=threads).generate(requests[::2])
