"""The warehouse IO manager: multi-partitions with a dynamic seed dimension, tables of an earlier version,
and another process holding the file."""

import multiprocessing as mp

import dagster as dg
import duckdb
import pandas as pd
import pytest

from resources.warehouse_io import WarehouseIOManager, create_empty_table, migrate_table
from support.duckdb_lock import hold_lock

parts = dg.MultiPartitionsDefinition(
    {"arm": dg.StaticPartitionsDefinition(["a", "b"]), "seed": dg.DynamicPartitionsDefinition(name="seeds")}
)


@dg.asset(partitions_def=parts, metadata={"partition_expr": {"arm": "arm", "seed": "seed"}})
def replicate(context) -> pd.DataFrame:
    keys = context.partition_key.keys_by_dimension
    return pd.DataFrame({"arm": [keys["arm"]], "seed": [keys["seed"]], "value": [1.0]})


@dg.asset(ins={"replicate": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())})
def every_replicate(replicate: pd.DataFrame) -> pd.DataFrame:
    return replicate.sort_values(["arm", "seed"]).reset_index(drop=True)


def test_a_dynamic_seed_dimension_writes_and_reads_back_whole(tmp_path):
    database = str(tmp_path / "w.duckdb")
    resources = {"io_manager": WarehouseIOManager(database=database, schema="main")}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("seeds", ["0", "1"])
        for arm in ("a", "b"):
            for seed in ("0", "1"):
                key = dg.MultiPartitionKey({"arm": arm, "seed": seed})
                assert dg.materialize([replicate], partition_key=key, instance=instance, resources=resources).success
        result = dg.materialize([replicate, every_replicate], selection=[every_replicate], instance=instance,
                                resources=resources)
    assert list(zip(*[result.output_for_node("every_replicate")[c] for c in ("arm", "seed")])) == [
        ("a", "0"), ("a", "1"), ("b", "0"), ("b", "1")
    ]


def test_a_table_of_an_earlier_version_is_rebuilt_with_its_rows(tmp_path):
    database = str(tmp_path / "w.duckdb")
    with duckdb.connect(database) as conn:
        conn.execute("CREATE TABLE main.t AS SELECT 'a' AS arm, 2.0 AS value")
    frame = pd.DataFrame({"arm": ["b"], "seed": ["0"], "value": [3.0]})
    assert migrate_table(database, "main", "t", frame) == ["arm", "value"]
    with duckdb.connect(database) as conn:
        assert [r[0] for r in conn.execute("DESCRIBE main.t").fetchall()] == ["arm", "seed", "value"]
        assert conn.execute("SELECT arm, seed, value FROM main.t").fetchall() == [("a", None, 2.0)]
    assert migrate_table(database, "main", "t", frame) is None  # same columns: untouched
    assert migrate_table(database, "main", "absent", frame) is None


def test_the_steps_before_the_write_wait_for_another_process_holding_the_file(tmp_path):
    """Two runs write one warehouse: the migration check and the empty-table creation open the file
    themselves, and must wait for the other writer's lock rather than fail the step."""
    database = str(tmp_path / "w.duckdb")
    with duckdb.connect(database) as conn:
        conn.execute("CREATE TABLE main.t AS SELECT 'a' AS arm, 2.0 AS value")
    frame = pd.DataFrame({"arm": ["b"], "seed": ["0"], "value": [3.0]})
    ctx = mp.get_context("spawn")
    for write in (lambda: migrate_table(database, "main", "t", frame),
                  lambda: create_empty_table(database, "main", "empty", frame.iloc[:0])):
        ready = ctx.Event()
        holder = ctx.Process(target=hold_lock, args=(database, 1.5, ready))
        holder.start()
        try:
            assert ready.wait(60)
            with pytest.raises(duckdb.IOException, match="lock"):  # the lock really is held
                duckdb.connect(database).close()
            assert write()
        finally:
            holder.join(60)
    with duckdb.connect(database) as conn:
        assert [r[0] for r in conn.execute("DESCRIBE main.t").fetchall()] == ["arm", "seed", "value"]
        assert conn.execute("SELECT count(*) FROM main.empty").fetchone()[0] == 0
