import multiprocessing as mp

import duckdb

from resources.warehouse import Warehouse, connect


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


def test_query_on_missing_file_is_empty(tmp_path):
    warehouse = Warehouse(database=str(tmp_path / "none.duckdb"))
    assert warehouse.query("SELECT 1").empty
    assert not warehouse.has_table("raw_instructions")
