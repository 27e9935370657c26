"""llm_calls: successes are reused, failures are not, and two writer processes can share it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import duckdb
import pytest

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


def test_call_writer_commits_a_group_when_it_is_full(tmp_path: Path) -> None:
    cache = CallCache(tmp_path / "c.duckdb")
    with CallWriter(cache, group_size=4, group_seconds=60) as writer:
        for i in range(3):
            writer.save(record(f"k{i}", text="x"))
        time.sleep(0.3)
        assert cache.count() == 0  # an open group: three records wait for a fourth (or for time)
        writer.save(record("k3", text="x"))
        deadline = time.monotonic() + 30
        while writer.written < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert cache.count() == 4 and writer.writes == 1


def test_call_writer_commits_a_lone_call_after_group_seconds_and_the_rest_at_close(tmp_path: Path) -> None:
    cache = CallCache(tmp_path / "c.duckdb")
    writer = CallWriter(cache, group_size=1000, group_seconds=0.2)
    writer.save(record("alone", text="x"))
    deadline = time.monotonic() + 30
    while writer.written < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cache.count() == 1  # nobody else came: time closed the group
    for i in range(5):
        writer.save(record(f"late{i}", text="x"))
    writer.close()
    assert cache.count() == 6 == writer.written


class SlowCache(CallCache):
    """A store that takes its time (a busy disk, a remote database): each write waits for `opened`."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.opened = threading.Event()

    def write(self, records: list[CallRecord]) -> None:
        self.opened.wait(timeout=60)
        super().write(records)


def test_call_writer_groups_calls_that_finish_together(tmp_path: Path) -> None:
    cache = SlowCache(tmp_path / "c.duckdb")
    writer = CallWriter(cache, group_seconds=0.01)
    threads = [threading.Thread(target=writer.save, args=(record(f"t{i}", text="x"),)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    time.sleep(0.2)
    cache.opened.set()
    writer.close()
    assert cache.count() == 8 == writer.written
    assert writer.writes <= 2  # the first record's group, then everything that queued behind it


def test_a_failed_write_stops_the_stage_and_names_the_store(tmp_path: Path) -> None:
    class Broken(CallCache):
        def write(self, records: list[CallRecord]) -> None:
            raise OSError("disk full")

    writer = CallWriter(Broken(tmp_path / "c.duckdb"), group_seconds=0.01)
    writer.save(record("k", text="x"))
    deadline = time.monotonic() + 30
    while writer._error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(RuntimeError, match=r"could not save teacher calls to CallCache\(.*c\.duckdb.*disk full"):
        writer.save(record("k2", text="x"))  # the stage stops paying for calls it cannot keep
    with pytest.raises(RuntimeError, match="disk full"):
        writer.close()


def test_a_slow_store_holds_the_savers_back_instead_of_growing_the_queue(tmp_path: Path) -> None:
    cache = SlowCache(tmp_path / "c.duckdb")
    writer = CallWriter(cache, group_size=2, group_seconds=0.01, max_pending=3)
    saved: list[int] = []

    def save_all() -> None:
        for i in range(20):
            writer.save(record(f"s{i}", text="x"))
            saved.append(i)

    saver = threading.Thread(target=save_all)
    saver.start()
    time.sleep(0.5)
    assert len(saved) <= 2 * 3  # at most max_pending taken by the writer and max_pending queued: the saver waits
    cache.opened.set()
    saver.join(timeout=60)
    writer.close()
    assert cache.count() == 20 == len(saved)


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
