"""The one DuckDB connection helper: two writer processes at once lose nothing; lock errors are recognised."""

import multiprocessing as mp
import time

import duckdb

from reflection_assets.database import connect, is_lock_error, table_exists
from support.duckdb_lock import hold_lock


def _writer(database: str, worker: int, batches: int) -> None:
    for batch in range(batches):
        with connect(database) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS t (worker INT, batch INT)")
            conn.execute("INSERT INTO t VALUES (?, ?)", [worker, batch])


def test_two_writer_processes_at_once_lose_nothing(tmp_path):
    database = str(tmp_path / "w.duckdb")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(database, w, 40)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with duckdb.connect(database, read_only=True) as conn:
        assert conn.execute("SELECT worker, count(*) FROM t GROUP BY 1 ORDER BY 1").fetchall() == [(0, 40), (1, 40)]


def test_connect_waits_for_a_held_lock_and_counts_the_waits(tmp_path):
    database = str(tmp_path / "w.duckdb")
    with connect(database) as conn:
        conn.execute("CREATE TABLE t (x INT)")
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=hold_lock, args=(database, 1.5, ready))
    holder.start()
    waits: list[int] = []
    try:
        assert ready.wait(60)
        started = time.monotonic()
        with connect(database, on_wait=lambda: waits.append(1)) as conn:
            assert table_exists(conn, "t") and not table_exists(conn, "missing")
        assert time.monotonic() - started > 0.1 and waits
    finally:
        holder.join(60)


def test_lock_errors_are_recognised_in_any_case():
    assert is_lock_error(duckdb.IOException('Could not set lock on file "w.duckdb": Conflicting lock is held'))
    assert is_lock_error(duckdb.IOException("conflicting LOCK"))
    assert not is_lock_error(duckdb.IOException("No such file or directory"))
    assert not is_lock_error(RuntimeError("lock"))  # not a DuckDB error
