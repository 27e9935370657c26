"""The caches and registries on a real Postgres (the shared deployment's store, REFLECTION_STORE_URL), through the
same classes and statements as on the DuckDB file: every cache round-trips, a success is never overwritten, and
nodes writing the same keys at once store each key once (tests/support/shared_stores.py starts Postgres)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from reflection_assets.database import connect
from reflection_assets.evaluation.cache import EvalOutputCache
from reflection_assets.ingest.near_duplicate_store import cached_signatures, store_signatures
from reflection_assets.ingest.registry import DatasetSource, lookup_source, register_source
from reflection_assets.scoring.cache import CacheScope, StudentScoreCache
from reflection_assets.teacher.cache import CallCache, CallRecord
from reflection_assets.teacher.types import CALL_ERROR, ChatResult
from reflection_assets.training.lineage import TRAINED_ROWS_TABLE, record_trained_rows

pytestmark = pytest.mark.slow  # Postgres (with the object store and MLflow: one session-wide set)

SCOPE = CacheScope("fp", "chatml", "th", "<s>", 512, "float32", "cpu")


@pytest.fixture
def store(shared_stores) -> str:
    """A database of its own on the session's Postgres (so each test starts with no tables)."""
    return shared_stores.fresh_store()


def record(key: str, text: str, status: str = "ok") -> CallRecord:
    result = ChatResult(text=text, status=status, error="" if status == "ok" else "timed out", prompt_tokens=3,
                        completion_tokens=5, latency_s=0.5, requests=1)
    return CallRecord(key, "http", "m", "v1", "reflect", '{"messages": []}', result)


def test_every_cache_and_registry_round_trips_on_postgres(store):
    calls = CallCache(store)
    calls.write([record("a", "first answer"), record("b", "", CALL_ERROR)])
    calls.write([record("a", "a second answer"), record("b", "b at last")])  # a: kept; b: failure replaced
    found = calls.lookup(["a", "b", "missing"])
    assert {k: v["response_text"] for k, v in found.items()} == {"a": "first answer", "b": "b at last"}
    assert found["b"]["tries"] == 2 and calls.count() == 2 and calls.count("error") == 0
    assert "postgresql://" in repr(calls)

    scores = StudentScoreCache(store)
    scores.put(SCOPE, {"k1": (1.25, 7), "k2": (0.5, 3)})
    scores.put(SCOPE, {"k1": (9.0, 9)})  # kept as it was
    assert scores.get(["k1", "k2", "k3"]) == {"k1": 1.25, "k2": 0.5} and scores.count() == 2

    outputs = EvalOutputCache(store)
    outputs.put("generation", {"g1": {"text": "100% sure?"}})
    assert outputs.get(["g1"]) == {"g1": {"text": "100% sure?"}} and outputs.count("generation") == 1

    signature = np.arange(8, dtype=np.uint32)
    assert store_signatures(store, "scheme-1", [("row", signature)]) == 1
    store_signatures(store, "scheme-1", [("row", np.zeros(8, dtype=np.uint32))])  # already cached: kept
    assert np.array_equal(cached_signatures(store, "scheme-1", ["row", "other"])["row"], signature)
    assert cached_signatures(store, "scheme-2", ["row"]) == {}

    register_source(store, "alpha", DatasetSource("/data/a.jsonl"))
    register_source(store, "alpha", DatasetSource("/data/a2.jsonl", "alpaca", {"output": "answer"}))
    assert lookup_source(store, "alpha") == DatasetSource("/data/a2.jsonl", "alpaca", {"output": "answer"})
    assert lookup_source(store, "beta") is None

    record_trained_rows(store, "selective", 0, "ck1", ["r1", "r2"])
    record_trained_rows(store, "selective", 0, "ck2", ["r3"])  # the seed's rows replaced, not added
    record_trained_rows(store, "selective", 1, "ck3", [])
    with connect(store) as conn:
        rows = conn.execute(f"SELECT arm, checkpoint_key, row_id, seed FROM {TRAINED_ROWS_TABLE}").fetchall()
    assert rows == [("selective", "ck2", "r3", "0")]


def test_a_failed_block_leaves_nothing_behind(store):
    with pytest.raises(RuntimeError), connect(store) as conn:
        conn.execute("CREATE TABLE t (k VARCHAR)")
        conn.execute("INSERT INTO t VALUES (?)", ["x"])
        raise RuntimeError("the caller failed half way")
    with connect(store) as conn:
        assert conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 't'").fetchone() == (0,)


def test_nodes_writing_the_same_calls_at_once_store_each_once(store):
    """Four writers (as four nodes would) create the tables and write overlapping keys at the same moment."""
    errors: list[str] = []
    start = threading.Barrier(4)

    def node(n: int) -> None:
        try:
            start.wait()
            CallCache(store).write([record(f"call-{i}", f"answer {i}") for i in range(n, n + 20)])
            StudentScoreCache(store).put(SCOPE, {f"seq-{i}": (float(i), 1) for i in range(n, n + 20)})
        except Exception as error:  # noqa: BLE001 - any error is this test's failure
            errors.append(repr(error))

    threads = [threading.Thread(target=node, args=(n * 5,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert CallCache(store).count() == 35 and StudentScoreCache(store).count() == 35  # keys 0..34, once each
