import json

import dagster as dg
import duckdb
import mlflow
import pytest

from reflection_assets.assets.ingest import raw_instructions
from reflection_assets.deployment import build_resources
from reflection_assets.partitions import DATASETS
from reflection_assets.paths import warehouse_path


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
    for key in ("a", "b", "a"):
        assert _materialize(dagster_instance, key, {"source": str(source)}).success
    with duckdb.connect(str(warehouse_path()), read_only=True) as conn:
        counts = dict(conn.execute("SELECT dataset, count(*) FROM raw_instructions GROUP BY 1").fetchall())
    assert counts == {"a": 2, "b": 2}


def test_demo_partition_reads_the_embedded_set(dagster_instance):
    dagster_instance.add_dynamic_partitions(DATASETS, ["demo"])
    result = _materialize(dagster_instance, "demo")
    meta = result.asset_materializations_for_node("raw_instructions")[0].metadata
    assert meta["accepted"].value >= 60 and meta["rejected"].value == 0


def test_unreadable_file_fails_the_run_with_one_clear_line(tmp_path, dagster_instance):
    source = tmp_path / "cut.json"
    source.write_text('[{"instruction": "a", "output": "b"}, {"instr')
    dagster_instance.add_dynamic_partitions(DATASETS, ["cut"])
    with pytest.raises(dg.Failure, match="cut.json"):
        _materialize(dagster_instance, "cut", {"source": str(source)})
