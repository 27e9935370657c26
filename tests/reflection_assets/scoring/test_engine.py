import functools
import math
import sys

import pytest
import torch
from scoring_tiny import tiny_gpt2, tiny_llama

import reflection_assets.scoring.engine as engine_module
from reflection_assets.scoring import statuses
from reflection_assets.scoring.engine import LossEngine, Prefix, plan_batches
from reflection_assets.scoring.prefixes import prefix_groups
from reflection_assets.scoring.reference import reference_loss
from reflection_assets.scoring.sequences import Seq
from support.oom import decoder, simulated_oom

VOCAB = 50
SEQS = [
    Seq((2, 7, 8, 9), (10, 11, 12)),
    Seq((2,), (10, 11, 12)),
    Seq((2, 5), (6,)),
    Seq((4, 4, 4, 4, 4, 4, 4, 4, 4), (13, 14, 15, 16, 17, 18)),
    Seq((3,), (20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30)),
]


def hand_loss(model, seq: Seq) -> float:
    """Mean NLL by hand: full logits of the whole sequence, log_softmax, pick each scored token."""
    ids = torch.tensor([list(seq.context + seq.scored)])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
    start = len(seq.context)
    nll = [-logprobs[start + i - 1, token].item() for i, token in enumerate(seq.scored)]
    return sum(nll) / len(nll)


@pytest.mark.parametrize("build", [tiny_llama, tiny_gpt2])
def test_losses_match_hand_computed_nll(build):
    model = build(VOCAB)
    engine = LossEngine(model)
    assert engine.uses_split_head  # the fast path, not the full-logits fallback
    results = engine.forward(SEQS)
    for seq, result in zip(SEQS, results):
        assert result.status == statuses.OK
        assert result.loss == pytest.approx(hand_loss(model, seq), abs=1e-5)


@pytest.mark.parametrize("build", [tiny_llama, tiny_gpt2])
@pytest.mark.parametrize("budget", [1, 12, 40, 10_000])
def test_batching_and_padding_give_the_one_at_a_time_numbers(build, budget):
    model = build(VOCAB)
    engine = LossEngine(model)
    batched = {}
    for results in engine.run(SEQS, batch_tokens=budget):
        batched.update(results)
    for seq in SEQS:
        assert batched[seq].loss == pytest.approx(reference_loss(model, seq), abs=1e-5)
    expected_calls = len(plan_batches([s.length for s in SEQS], budget))
    assert engine.forward_calls == expected_calls


def test_plan_batches_longest_first_within_budget():
    lengths = [5, 9, 3, 9, 1, 7]
    batches = plan_batches(lengths, 20)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches[0][0] in (1, 3)
    for batch in batches:
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 20
    assert plan_batches([50, 2], 10) == [[0], [1]]  # a sequence over budget gets its own batch


def test_full_logits_fallback_when_the_head_post_processes_logits():
    model = tiny_llama(VOCAB)
    original = model.forward

    def capped_forward(*args, **kwargs):  # a model that soft-caps its logits (Gemma-2 style)
        out = original(*args, **kwargs)
        out.logits = 5.0 * torch.tanh(out.logits / 5.0)
        return out

    model.forward = capped_forward
    engine = LossEngine(model)
    assert not engine.uses_split_head
    results = engine.forward(SEQS)
    for seq, result in zip(SEQS, results):
        assert result.loss == pytest.approx(hand_loss(model, seq), abs=1e-5)


def test_a_failing_sequence_gets_an_error_status_and_the_rest_are_scored():
    model = tiny_llama(VOCAB)
    bad = Seq((2, 3), (VOCAB + 5,))  # an id outside the vocabulary
    engine = LossEngine(model)
    results = {}
    for chunk in engine.run(SEQS + [bad], batch_tokens=10_000):
        results.update(chunk)
    assert results[bad].status.startswith(statuses.ERROR_PREFIX) and results[bad].loss is None
    for seq in SEQS:
        assert results[seq].status == statuses.OK
        assert results[seq].loss == pytest.approx(hand_loss(model, seq), abs=1e-5)


def test_non_finite_loss_is_an_error_status():
    model = tiny_llama(VOCAB)
    with torch.no_grad():
        model.lm_head.weight[11] = float("nan")
    result = LossEngine(model).forward([Seq((2,), (11,)), Seq((2,), (12,))])
    assert result[0].status == statuses.error(statuses.NONFINITE) and result[0].loss is None


def test_progress_reports_tokens_done_and_total():
    calls = []
    engine = LossEngine(tiny_llama(VOCAB))
    list(engine.run(SEQS, batch_tokens=12, progress=lambda done, total: calls.append((done, total))))
    total = sum(s.length for s in SEQS)
    assert calls[-1] == (total, total)
    assert all(t == total for _, t in calls) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert math.isclose(len(calls), engine.forward_calls)


SHARED = (5, 6, 7, 8, 9, 10, 11, 12, 13, 14)  # a ten-token prompt prefix many sequences start with
PREFIXED = [Seq(SHARED + (15 + i % 7,) * (1 + i % 3), (20 + i % 11, 31 + i % 5)) for i in range(16)] + [
    Seq((2,), (3, 4))
]


def small_prefixes_count(monkeypatch) -> None:
    """Let the tiny test sequences' ten-token prefix form a group (the defaults want more)."""
    monkeypatch.setattr(engine_module, "prefix_groups", functools.partial(prefix_groups, min_length=4, min_saved=4))


@pytest.mark.parametrize("budget", [12, 40, 10_000])
def test_a_shared_prefix_runs_once_and_gives_the_one_at_a_time_numbers(budget, monkeypatch):
    small_prefixes_count(monkeypatch)
    model = tiny_llama(VOCAB)
    sharing, plain = LossEngine(model), LossEngine(model, share_prefixes=False)
    seqs = list(dict.fromkeys(PREFIXED))
    got = {k: v for chunk in sharing.run(seqs, batch_tokens=budget) for k, v in chunk.items()}
    want = {k: v for chunk in plain.run(seqs, batch_tokens=budget) for k, v in chunk.items()}
    assert sharing.prefix_calls == 1
    assert sharing.tokens_processed < plain.tokens_processed == sum(s.length for s in seqs)
    for seq in seqs:
        assert got[seq].status == statuses.OK
        assert got[seq].loss == pytest.approx(reference_loss(model, seq), abs=1e-5)
        assert got[seq].loss == pytest.approx(want[seq].loss, abs=1e-5)


def test_prefix_sharing_is_off_when_the_probe_disagrees(monkeypatch):
    model = tiny_llama(VOCAB)
    engine = LossEngine(model)
    monkeypatch.setattr(LossEngine, "_compute_prefix", lambda self, tokens: None)  # e.g. a sliding-window cache
    assert engine.shared_prefix(SHARED) is None
    results = {k: v for chunk in engine.run(list(dict.fromkeys(PREFIXED))) for k, v in chunk.items()}
    assert engine.prefix_calls == 0
    assert all(r.status == statuses.OK for r in results.values())


def test_prefix_sharing_is_off_when_the_probe_gives_other_numbers(monkeypatch):
    small_prefixes_count(monkeypatch)
    model = tiny_llama(VOCAB)
    original = Prefix.cache_for

    def zeroed(self, rows, config):  # keys and values that do not match the prefix
        return original(Prefix(self.length, tuple((k * 0, v * 0) for k, v in self.layers)), rows, config)

    monkeypatch.setattr(Prefix, "cache_for", zeroed)
    engine = LossEngine(model)
    results = {k: v for chunk in engine.run(list(dict.fromkeys(PREFIXED))) for k, v in chunk.items()}
    assert engine.prefix_calls == 0 and not engine._can_share_prefixes()
    for seq, result in results.items():
        assert result.loss == pytest.approx(reference_loss(model, seq), abs=1e-5)


def test_a_prefix_that_fails_after_the_probe_falls_back_to_full_sequences(monkeypatch):
    small_prefixes_count(monkeypatch)
    model = tiny_llama(VOCAB)
    engine = LossEngine(model)
    assert engine._can_share_prefixes()  # the probe passed; the failures below come later

    def fail(self, rows, config):
        raise RuntimeError("out of memory while copying the prefix")

    monkeypatch.setattr(Prefix, "cache_for", fail)  # every batch with a prefix fails, down to one row
    results = {k: v for chunk in engine.run(list(dict.fromkeys(PREFIXED)), batch_tokens=40) for k, v in chunk.items()}
    assert engine.prefix_calls == 1
    for seq, result in results.items():
        assert result.status == statuses.OK
        assert result.loss == pytest.approx(reference_loss(model, seq), abs=1e-5)

    def fail_prefix(self, tokens):
        raise RuntimeError("out of memory computing the prefix")

    monkeypatch.setattr(LossEngine, "_compute_prefix", fail_prefix)
    again = {k: v for chunk in engine.run(list(dict.fromkeys(PREFIXED))) for k, v in chunk.items()}
    assert all(again[seq].loss == pytest.approx(results[seq].loss, abs=1e-5) for seq in results)


@pytest.mark.parametrize("build", [tiny_llama, tiny_gpt2])
def test_an_out_of_memory_batch_is_halved_after_the_except_block_with_its_memory_freed(build):
    """Batches over two rows run out of memory: halves are retried outside the except block (see
    support.oom: no exception in flight, the failed forward's tensors gone) and give the unsplit numbers."""
    model = build(VOCAB)
    want = {k: v for chunk in LossEngine(model).run(SEQS, batch_tokens=10_000) for k, v in chunk.items()}
    engine = LossEngine(model)
    with simulated_oom(decoder(model), max_rows=2) as oom:
        got = {k: v for chunk in engine.run(SEQS, batch_tokens=10_000) for k, v in chunk.items()}
    assert oom.failed_rows[0] == len(SEQS) and oom.retries >= 3
    for seq in SEQS:
        assert got[seq].status == statuses.OK
        assert got[seq].loss == pytest.approx(want[seq].loss, abs=1e-6)


def test_a_single_sequence_out_of_memory_is_an_error_status_and_memory_is_freed_first(monkeypatch):
    model = tiny_llama(VOCAB)
    engine = LossEngine(model)
    assert engine.uses_split_head  # its one-row probe runs before memory runs short
    freed = []
    monkeypatch.setattr(engine_module, "free_cuda_memory", lambda: freed.append(sys.exc_info()))
    long_one = max(SEQS, key=lambda s: s.length)
    with simulated_oom(decoder(model), max_rows=0):
        [result] = engine._forward_or_split([long_one])
    assert result == engine_module.SeqLoss(None, statuses.error("OutOfMemoryError"))
    assert freed == [(None, None, None)]  # freed once, after the except block
