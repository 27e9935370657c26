import dataclasses
import multiprocessing
import time

import duckdb
import pytest

from reflection_assets.database import is_lock_error
from reflection_assets.schema import Pair
from reflection_assets.scoring.cache import SCORER_VERSION, CacheScope, StudentScoreCache, sequence_key
from reflection_assets.scoring.scorer import (
    ScoringConfig,
    plan_pairs,
    score_chunks,
    score_pairs,
    settings_for,
    unique_sequences,
)
from reflection_assets.scoring.sequences import Seq
from support.duckdb_lock import hold_lock

SCOPE = CacheScope("fp", "alpaca", "th", "bos", 512, "float32", "cpu")
PAIRS = [
    Pair(instruction="Give three tips for staying healthy .", output="Eat well , sleep enough and exercise daily ."),
    Pair(instruction="Name a colour .", output="Blue is a colour ."),
    Pair(instruction="What is two plus two ?", output="Four ."),
]


def test_key_depends_on_every_scope_field_and_on_the_ids():
    seq = Seq((1, 2), (3,))
    base = sequence_key(SCOPE.key(), seq)
    assert SCOPE.scorer_version == SCORER_VERSION
    for field, value in [
        ("model_fingerprint", "other"),
        ("template", "chat"),
        ("template_hash", "x"),
        ("start_token", "eos"),
        ("max_length", 256),
        ("dtype", "bfloat16"),
        ("device_kind", "cuda"),
        ("scorer_version", "0"),
    ]:
        assert sequence_key(dataclasses.replace(SCOPE, **{field: value}).key(), seq) != base, field
    assert sequence_key(SCOPE.key(), Seq((1,), (2, 3))) != base  # same concatenation, different split
    assert sequence_key(SCOPE.key(), Seq((1, 2), (3,))) == base


def test_put_then_get_roundtrip_keeps_first_value(tmp_path):
    cache = StudentScoreCache(tmp_path / "w.duckdb")
    assert cache.get(["a"]) == {}
    cache.put(SCOPE, {"a": (1.5, 3), "b": (2.5, 4)})
    cache.put(SCOPE, {"a": (9.0, 3)})
    assert cache.get(["a", "b", "c"]) == {"a": 1.5, "b": 2.5}
    assert cache.count() == 2


def test_a_locked_database_is_retried_until_free(tmp_path):
    path = str(tmp_path / "w.duckdb")
    StudentScoreCache(path).put(SCOPE, {"x": (1.0, 1)})
    ready = multiprocessing.get_context("spawn").Event()
    holder = multiprocessing.get_context("spawn").Process(target=hold_lock, args=(path, 2.0, ready))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(duckdb.Error) as info:
            duckdb.connect(path)
        assert is_lock_error(info.value)
        started = time.monotonic()
        StudentScoreCache(path).put(SCOPE, {"y": (2.0, 1)})  # waits for the other process
        assert time.monotonic() - started > 0.1
    finally:
        holder.join(60)
    assert StudentScoreCache(path).get(["x", "y"]) == {"x": 1.0, "y": 2.0}


def test_second_scoring_run_does_no_forward_pass(tmp_path, llama_student):
    cache = StudentScoreCache(tmp_path / "w.duckdb")
    config = ScoringConfig(template="alpaca")
    first = score_pairs(PAIRS, llama_student, config, cache=cache)
    calls = llama_student.engine.forward_calls
    assert calls > 0 and cache.count() == 4 * len(PAIRS)
    second = score_pairs(PAIRS, llama_student, config, cache=cache)
    assert llama_student.engine.forward_calls == calls
    assert second == first
    # A changed setting is a different key: it is computed again.
    score_pairs(PAIRS, llama_student, ScoringConfig(template="alpaca", start_token="eos"), cache=cache)
    assert llama_student.engine.forward_calls > calls


def test_only_new_rows_are_computed(tmp_path, llama_student):
    cache = StudentScoreCache(tmp_path / "w.duckdb")
    score_pairs(PAIRS[:2], llama_student, ScoringConfig(template="alpaca"), cache=cache)
    before = cache.count()
    seen = []
    score_pairs(
        PAIRS, llama_student, ScoringConfig(template="alpaca"), cache=cache, progress=lambda d, t: seen.append(t)
    )
    assert cache.count() == before + 4
    settings = settings_for(llama_student, ScoringConfig(template="alpaca"))
    new_seqs = unique_sequences(plan_pairs(llama_student, settings, PAIRS[2:]))
    assert seen[-1] == sum(seq.length for seq in new_seqs)  # only the new pair's four sequences ran


def test_chunks_give_the_same_scores_and_progress_ends_on_the_tokens_computed(tmp_path, llama_student):
    config = ScoringConfig(template="alpaca")
    whole = score_pairs(PAIRS, llama_student, config)
    cache = StudentScoreCache(tmp_path / "w.duckdb")
    score_pairs(PAIRS[2:], llama_student, config, cache=cache)  # the last chunk is cached already
    seen = []
    chunks = list(score_chunks(PAIRS, llama_student, config, cache=cache, progress=lambda d, t: seen.append((d, t)),
                               chunk_rows=2))
    assert [len(chunk) for chunk in chunks] == [2, 1]
    chunked = [score for chunk in chunks for score in chunk]
    assert [s.id for s in chunked] == [s.id for s in whole]
    for a, b in zip(chunked, whole):  # other batches: the same losses up to float rounding
        a_numbers, a_rest = split_fields(dataclasses.asdict(a))
        b_numbers, b_rest = split_fields(dataclasses.asdict(b))
        assert a_rest == b_rest and a_numbers == pytest.approx(b_numbers, rel=1e-5)
    settings = settings_for(llama_student, config)
    computed = sum(seq.length for seq in unique_sequences(plan_pairs(llama_student, settings, PAIRS[:2])))
    assert seen[-1] == (computed, computed)  # the estimate counted a third chunk as big as the first
    assert all(done <= total for done, total in seen)


def test_a_kill_after_a_chunk_loses_none_of_its_scores(tmp_path, llama_student):
    cache = StudentScoreCache(tmp_path / "w.duckdb")
    config = ScoringConfig(template="alpaca")
    chunks = score_chunks(PAIRS, llama_student, config, cache=cache, chunk_rows=2)
    next(chunks)  # the run stops here, as a killed one would
    assert cache.count() == 4 * 2  # both rows' four passes, before the next chunk started
    calls = llama_student.engine.forward_calls
    score_pairs(PAIRS[:2], llama_student, config, cache=cache)
    assert llama_student.engine.forward_calls == calls


def split_fields(row: dict) -> tuple[dict, dict]:
    """(numbers, the rest) of a score row."""
    numbers = {k: v for k, v in row.items() if isinstance(v, float)}
    return numbers, {k: v for k, v in row.items() if k not in numbers}
