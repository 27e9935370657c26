import json

import dagster as dg
import duckdb
import mlflow
import pytest

from reflection_assets.defs.assets.ingest import raw_instructions
from reflection_assets.defs.deployment import build_resources
from reflection_assets.defs.partitions import DATASETS
from reflection_assets.paths import warehouse_path
from support.console_keys import assert_console_reads_written_keys
from support.near_duplicate_rows import SEA, SKY, SKY_AGAIN, write_rows


def _write_dataset(path):
    rows = [
        json.dumps({"instruction": "Add 2 and 3.", "input": "", "output": "5"}),
        json.dumps({"instruction": "Name a colour.", "output": "Blue."}),
        json.dumps({"instruction": "Add 2 and 3.", "input": "", "output": "5"}),  # duplicate
        '{"instruction": "broken',  # invalid JSON
        json.dumps({"instruction": "", "output": "x"}),  # empty field
    ]
    path.write_text("\n".join(rows) + "\n")


def _materialize(instance, key, config=None):
    return dg.materialize(
        [raw_instructions],
        partition_key=key,
        instance=instance,
        resources=build_resources(),
        run_config={"ops": {"raw_instructions": {"config": config or {}}}},
    )


def test_raw_instructions_writes_accepted_and_rejected_tables(tmp_path, dagster_instance):
    source = tmp_path / "mixed.jsonl"
    _write_dataset(source)
    dagster_instance.add_dynamic_partitions(DATASETS, ["mixed"])
    result = _materialize(dagster_instance, "mixed", {"source": str(source)})
    assert result.success
    with duckdb.connect(str(warehouse_path()), read_only=True) as conn:
        accepted = conn.execute(
            "SELECT dataset, instruction, source_row FROM raw_instructions ORDER BY source_row"
        ).fetchall()
        rejected = dict(conn.execute("SELECT reason, count(*) FROM rejected_rows GROUP BY 1").fetchall())
    assert accepted == [("mixed", "Add 2 and 3.", 1), ("mixed", "Name a colour.", 2)]
    assert rejected == {"duplicate": 1, "invalid_json": 1, "empty_field": 1}

    checks = result.get_asset_check_evaluations()
    assert [c.passed for c in checks] == [True]
    meta = result.asset_materializations_for_node("raw_instructions")[0].metadata
    assert meta["rows_read"].value == 5 and meta["accepted"].value == 2 and meta["rejected"].value == 3
    mlflow.set_tracking_uri(build_resources()["mlflow"].resolved_uri())
    run = mlflow.get_run(meta["mlflow_run_id"].value)
    assert run.data.metrics["rows_read"] == 5
    assert run.data.tags["dagster.partition_key"] == "mixed"
    assert run.data.tags["dagster.run_id"] == result.run_id


def test_re_materializing_a_partition_replaces_its_rows(tmp_path, dagster_instance):
    source = tmp_path / "mixed.jsonl"
    _write_dataset(source)
    dagster_instance.add_dynamic_partitions(DATASETS, ["a", "b"])
    for key in ("a", "b", "a"):  # the same file twice on purpose: no check across partitions
        config = {"source": str(source), "near_duplicates_across_partitions": False}
        assert _materialize(dagster_instance, key, config).success
    with duckdb.connect(str(warehouse_path()), read_only=True) as conn:
        counts = dict(conn.execute("SELECT dataset, count(*) FROM raw_instructions GROUP BY 1").fetchall())
    assert counts == {"a": 2, "b": 2}


def test_unreadable_file_fails_the_run_with_one_clear_line(tmp_path, dagster_instance):
    source = tmp_path / "cut.json"
    source.write_text('[{"instruction": "a", "output": "b"}, {"instr')
    dagster_instance.add_dynamic_partitions(DATASETS, ["cut"])
    with pytest.raises(dg.Failure, match="cut.json"):
        _materialize(dagster_instance, "cut", {"source": str(source)})


def _rejected(key):
    with duckdb.connect(str(warehouse_path()), read_only=True) as conn:
        return conn.execute(
            "SELECT source_row, reason, detail FROM rejected_rows WHERE dataset = ? ORDER BY source_row", [key]
        ).fetchall()


def test_a_reworded_repunctuated_copy_is_rejected_as_near_duplicate_and_counted(tmp_path, dagster_instance):

    source = write_rows(tmp_path / "sky.jsonl", [SKY, SEA, SKY_AGAIN, SKY])
    dagster_instance.add_dynamic_partitions(DATASETS, ["sky"])
    result = _materialize(dagster_instance, "sky", {"source": str(source)})
    rejected = _rejected("sky")
    assert [(row, reason) for row, reason, _ in rejected] == [(3, "near_duplicate"), (4, "duplicate")]
    with duckdb.connect(str(warehouse_path()), read_only=True) as conn:
        first = conn.execute("SELECT row_id FROM raw_instructions WHERE dataset = 'sky' AND source_row = 1").fetchone()
    assert f"near-duplicate of row_id {first[0]} ({source} line 1)" in rejected[0][2]
    meta = result.asset_materializations_for_node("raw_instructions")[0].metadata
    assert meta["near_duplicates"].value == 1 and meta["near_duplicate_calls_saved"].value == 2
    assert meta["accepted"].value == 2 and meta["rejected"].value == 2
    assert [c.passed for c in result.get_asset_check_evaluations()] == [True]
    assert_console_reads_written_keys("raw_instructions", meta)


def test_a_copy_of_an_earlier_partitions_row_is_rejected_naming_that_partition(tmp_path, dagster_instance):

    dagster_instance.add_dynamic_partitions(DATASETS, ["first", "second", "alone"])
    first = write_rows(tmp_path / "first.jsonl", [SKY])
    second = write_rows(tmp_path / "second.jsonl", [SEA, SKY_AGAIN])
    assert _materialize(dagster_instance, "first", {"source": str(first)}).success
    result = _materialize(dagster_instance, "second", {"source": str(second)})
    ((row, reason, detail),) = _rejected("second")
    assert (row, reason) == (2, "near_duplicate") and f"partition first: {first} row 1" in detail
    assert result.asset_materializations_for_node("raw_instructions")[0].metadata["near_duplicates"].value == 1
    # Re-materializing "first" checks it against the others' kept rows, never against its own old ones.
    assert _materialize(dagster_instance, "first", {"source": str(first)}).success
    assert _rejected("first") == []
    # Within one partition only, or with the check off, nothing of the earlier partitions counts.
    assert _materialize(dagster_instance, "alone", {"source": str(second), "near_duplicates_across_partitions": False})
    assert _rejected("alone") == []
    off = _materialize(dagster_instance, "second", {"source": str(second), "near_duplicates": False})
    assert _rejected("second") == []
    assert off.asset_materializations_for_node("raw_instructions")[0].metadata["near_duplicates"].value == 0
