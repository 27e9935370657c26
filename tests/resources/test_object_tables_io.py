"""The asset tables as Delta Lake tables in an S3-compatible bucket (REFLECTION_STORAGE=shared): the dataset stage
and the selection write and read them through the IO manager, DuckDB queries them as Arrow datasets, and two
writers of one partition cannot both win (tests/support/shared_stores.py starts the store)."""

from __future__ import annotations

import json
import threading
import uuid

import dagster as dg
import duckdb
import pandas as pd
import pytest

from reflection_assets.defs.definitions import ASSET_MODULES
from reflection_assets.defs.deployment import build_resources
from reflection_assets.defs.partitions import DATASETS
from reflection_assets.object_tables import (
    TABLES_URI_ENV,
    ConcurrentWrite,
    arrow_dataset,
    read_table,
    storage_options,
    table_uri,
    write_partition,
)
from reflection_assets.paths import warehouse_path
from reflection_assets.storage import storage_from_env
from reflection_assets.teacher.prompts import BETTER_ANSWER, END, NEW_ANSWER, NEW_INSTRUCTION
from resources.object_tables_io import ObjectTablesIOManager
from resources.teacher_scripted import CannedReply, ScriptedTeacher
from resources.warehouse import Warehouse

pytestmark = pytest.mark.slow  # an object store (with Postgres and MLflow: one session-wide set)

ASSETS = dg.load_assets_from_modules(ASSET_MODULES)
PER_DATASET = ["raw_instructions", "rejected_rows", "raw_ifd_scores", "instruction_reflections",
               "instruction_ifd_scores", "response_reflections", "response_scores"]
SOURCES = {"alpha": 3, "beta": 2}  # partition -> rows
TEACHER = ScriptedTeacher(replies=[
    CannedReply(match=[NEW_INSTRUCTION], reply=f"{NEW_INSTRUCTION}\nExplain it with an example.\n{END}\n"
                                               f"{NEW_ANSWER}\nAn example answer.\n{END}"),
    CannedReply(match=[BETTER_ANSWER], reply=f"{BETTER_ANSWER}\nA careful answer.\n{END}"),
])


@pytest.fixture
def shared_tables(isolated_data_dir, shared_stores, monkeypatch, tiny_base) -> str:
    """This node's environment for the shared tables, under a root of its own in the bucket."""
    for name, value in shared_stores.node_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # this test is about the tables: MLflow stays local
    root = f"s3://reflection/tables-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("REFLECTION_STORAGE", "shared")
    monkeypatch.setenv(TABLES_URI_ENV, root)
    monkeypatch.setenv("REFLECTION_STORE_URL", shared_stores.fresh_store())
    monkeypatch.setenv("REFLECTION_STUDENT", tiny_base)
    return root


def test_the_dataset_stage_and_the_selection_run_on_delta_tables_in_the_bucket(
    shared_tables, dagster_instance, tmp_path
):
    from reflection_assets.ingest.registry import DatasetSource, register_source

    resources = {**build_resources(), "teacher": TEACHER}
    assert isinstance(resources["io_manager"], ObjectTablesIOManager)
    for key, rows in SOURCES.items():
        source = tmp_path / f"{key}.jsonl"
        source.write_text("".join(json.dumps({"instruction": f"Explain topic {i} of {key}.", "output": f"It is {i}."})
                                  + "\n" for i in range(rows)))
        register_source(storage_from_env().store(), key, DatasetSource(str(source)))
    dagster_instance.add_dynamic_partitions(DATASETS, list(SOURCES))

    for key in SOURCES:
        result = dg.materialize(ASSETS, selection=PER_DATASET, partition_key=key, instance=dagster_instance,
                                resources=resources, raise_on_error=False)
        assert result.success, key
        uri = result.asset_materializations_for_node("response_scores")[0].metadata["table_uri"].value
        assert uri == table_uri(shared_tables, "response_scores")
    selection = dg.materialize(ASSETS, selection=["selected_dataset"], instance=dagster_instance,
                               resources=resources, raise_on_error=False)
    assert selection.success

    options = storage_options()
    for table in PER_DATASET[2:]:  # one Delta partition per dataset, every row once
        rows = read_table(table_uri(shared_tables, table), None, options)
        assert rows.groupby("dataset")["row_id"].nunique().to_dict() == SOURCES, table
    assert len(read_table(table_uri(shared_tables, "selected_dataset"), None, options)) == sum(SOURCES.values())
    assert len(read_table(table_uri(shared_tables, "raw_instructions"), {"dataset": ["beta"]}, options)) == 2

    # SQL over the bucket's tables and the store's registries, as the lineage and the report run it: DuckDB over
    # Arrow datasets.
    with Warehouse(database=str(warehouse_path()), tables_uri=shared_tables,
                   store_url=storage_from_env().store_url).connection(read_only=True) as conn:
        joined = conn.execute("SELECT count(*) FROM raw_instructions r JOIN response_scores USING (row_id) "
                              "JOIN selected_dataset USING (row_id) JOIN dataset_sources s ON s.dataset = r.dataset"
                              ).fetchone()[0]
    assert joined == sum(SOURCES.values())
    with duckdb.connect() as conn:  # any DuckDB reads them as they are
        conn.register("raw", arrow_dataset(table_uri(shared_tables, "raw_instructions"), options))
        assert conn.execute("SELECT count(*) FROM raw").fetchone()[0] == sum(SOURCES.values())
    assert not warehouse_path().exists()  # no asset table, cache or registry on this node's disk


def test_two_writers_of_one_partition_cannot_both_win(shared_tables):
    """Writers of partition `same` race, round after round, beside one of partition `other`: every write either
    commits or fails with the reason, `other` always commits, and `same` holds exactly one committed write."""
    uri, options = table_uri(shared_tables, "race"), storage_options()
    committed, refused, errors = [], [], []

    def frame(partition: str, tag: str) -> pd.DataFrame:
        return pd.DataFrame({"dataset": [partition] * 3, "row_id": [f"{tag}-{i}" for i in range(3)], "tag": tag})

    def writer(partition: str, name: str) -> None:
        for round_ in range(4):
            tag = f"{name}{round_}"
            try:
                version = write_partition(uri, frame(partition, tag), {"dataset": partition}, options)
                committed.append((version, partition, tag))
            except ConcurrentWrite as error:
                refused.append(str(error))
            except Exception as error:  # noqa: BLE001 - anything else is a failure of this test
                errors.append(repr(error))

    write_partition(uri, frame("same", "setup"), {"dataset": "same"}, options)
    threads = [threading.Thread(target=writer, args=args) for args in (("same", "a"), ("same", "b"), ("other", "c"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert all("another run committed to it while this one wrote" in reason for reason in refused)
    assert [tag for _, partition, tag in committed if partition == "other"] == [f"c{i}" for i in range(4)]
    table = read_table(uri, None, options)
    same = table[table["dataset"] == "same"]
    assert len(same) == 3 and same["tag"].nunique() == 1  # one write's rows, none mixed or doubled
    assert same["tag"].iloc[0] in {tag for _, partition, tag in committed if partition == "same"}
    assert len(committed) + len(refused) == 12


def test_a_commit_that_lost_the_race_fails_the_step_with_the_reason_and_is_not_retried(tmp_path, monkeypatch):
    """The same-partition race as the run sees it: the writer that lost gets a step failure naming why (forced
    here: which writer loses a real race depends on timing, test_two_writers_of_one_partition_cannot_both_win)."""
    import resources.object_tables_io as io

    def lost(uri, frame, where, options):
        raise ConcurrentWrite(f"{uri} (dataset=alpha): another run committed to it while this one wrote")

    monkeypatch.setattr(io, "write_partition", lost)
    partitions = dg.StaticPartitionsDefinition(["alpha"])

    @dg.asset(partitions_def=partitions, metadata={"partition_expr": "dataset"}, retry_policy=dg.RetryPolicy(2))
    def rows() -> pd.DataFrame:
        return pd.DataFrame({"dataset": ["alpha"], "row_id": ["r1"]})

    result = dg.materialize([rows], partition_key="alpha", raise_on_error=False,
                            resources={"io_manager": ObjectTablesIOManager(root=str(tmp_path / "tables"))})
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "another run committed to it while this one wrote" in failure.step_failure_data.error.message
    assert failure.step_failure_data.error.cls_name == "Failure"
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]  # despite the policy


def test_reading_no_partition_gives_no_rows_and_the_tables_columns(tmp_path):
    uri, options = str(tmp_path / "rows"), {}
    write_partition(uri, pd.DataFrame({"dataset": ["a", "b"], "row_id": ["r1", "r2"]}), {"dataset": "a"}, options)
    assert list(read_table(uri, {"dataset": ["a"]}, options)["row_id"]) == ["r1"]
    empty = read_table(uri, {"dataset": []}, options)
    assert empty.empty and list(empty.columns) == ["dataset", "row_id"]
    assert len(read_table(uri, None, options)) == 2
