"""llm_calls: successes are reused, failures are not, and two writer processes can share it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import duckdb

from reflection_assets.teacher.cache import CallCache, CallRecord, CallWriter
from reflection_assets.teacher.types import ChatResult

REPO = Path(__file__).resolve().parents[3]


def record(key: str, **result: object) -> CallRecord:
    return CallRecord(key, "openai", "m", "v1", "instruction", '{"messages": []}', ChatResult(**result))  # type: ignore[arg-type]


def test_only_successes_are_reused_and_never_overwritten(tmp_path: Path) -> None:
    cache = CallCache(tmp_path / "c.duckdb")
    cache.write([record("a", status="error", error="HTTP 500", requests=5), record("b", text="B", completion_tokens=3)])
    assert set(cache.lookup(["a", "b", "zzz"])) == {"b"}
    cache.write([record("a", text="A", requests=1)])  # a later success replaces the failure
    cache.write([record("a", status="error", error="late failure"), record("b", text="changed")])  # never overwrites
    hits = cache.lookup(["a", "b"])
    assert hits["a"]["response_text"] == "A" and hits["a"]["tries"] == 2
    assert hits["b"]["response_text"] == "B" and hits["b"]["completion_tokens"] == 3
    assert cache.count() == 2 and cache.count("ok") == 2


def test_call_writer_saves_each_call_before_returning(tmp_path: Path) -> None:
    cache = CallCache(tmp_path / "c.duckdb")
    writer = CallWriter(cache)
    for i in range(3):
        writer.save(record(f"k{i}", text="x"))
        assert cache.count() == i + 1  # on disk when save returns, no buffer to lose


def test_call_writer_groups_calls_that_finish_together(tmp_path: Path) -> None:
    cache = CallCache(tmp_path / "c.duckdb")
    cache.count()  # create the table
    writer = CallWriter(cache)
    blocker = duckdb.connect(str(cache.path))  # hold the file: the savers queue up behind it
    threads = [threading.Thread(target=writer.save, args=(record(f"t{i}", text="x"),)) for i in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    blocker.close()
    for thread in threads:
        thread.join(timeout=60)
    assert cache.count() == 8 == writer.written
    assert writer.writes < 8  # the threads that waited were written together


def test_lookup_handles_many_keys(tmp_path: Path) -> None:
    cache = CallCache(tmp_path / "c.duckdb")
    cache.write([record(f"k{i}", text=str(i)) for i in range(120)])
    assert len(cache.lookup([f"k{i}" for i in range(200)], chunk=50)) == 120


# Each writer says "waiting" once its first write has met the held file (a handshake, not a sleep: under load a
# process may take longer to start than any fixed pause), then writes its batches.
WRITER = textwrap.dedent(
    """
    import sys, threading, time
    from reflection_assets.teacher.cache import CallCache, CallRecord
    from reflection_assets.teacher.types import ChatResult
    path, name, batches = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cache = CallCache(path, lock_timeout_s=120)

    def batch(b):
        result = ChatResult(text="x")
        cache.write([CallRecord(f"{name}-{b}-{i}", "openai", "m", "v1", "instruction", "{}", result) for i in range(5)])
        cache.lookup([f"{name}-{b}-0"])

    first = threading.Thread(target=batch, args=(0,))
    first.start()
    while cache.lock_waits == 0 and first.is_alive():
        time.sleep(0.01)
    print("waiting", flush=True)
    first.join()
    for b in range(1, batches):
        batch(b)
    print(cache.lock_waits)
    """
)


def test_two_writer_processes_at_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.duckdb"
    CallCache(path).count()  # create the table
    blocker = duckdb.connect(str(path))  # hold the file so both writers must wait for it
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, "30"], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in ("p1", "p2")
    ]
    assert [p.stdout.readline().strip() for p in procs] == ["waiting", "waiting"]  # both met the held file
    blocker.close()
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-2000:]
    lock_waits = [int(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert all(w >= 1 for w in lock_waits), lock_waits
    assert CallCache(path).count() == 2 * 30 * 5
