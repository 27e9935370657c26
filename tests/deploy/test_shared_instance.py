"""Two machines, one Dagster instance: deploy/shared/dagster.yaml on a real Postgres and an S3-compatible
bucket on loopback (tests/support/shared_stores.py). Two `dagster asset materialize` processes, each with its
own empty data folder, ingest a partition each at the same time; a third reads both runs, their events, the
partitions and the step logs from the shared stores alone, and the MLflow runs from the tracking server.

What is still one machine's (deploy/README.md): the asset tables and caches (each node's DuckDB file).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

REPO = Path(__file__).resolve().parents[2]
DATASETS = {"alpha": 3, "beta": 2}  # partition -> rows

pytestmark = pytest.mark.slow  # Postgres, an object store, an MLflow server and two run processes


def node(tmp_path: Path, key: str, rows: int, env: dict) -> dict:
    """One machine: its own data folder holding the source file it registers, and its environment."""
    folder = tmp_path / f"node-{key}"
    folder.mkdir()
    source = folder / f"{key}.jsonl"
    source.write_text("".join(json.dumps({"instruction": f"ROW={key}{i} Explain item {i}.",
                                          "output": f"Item {i} of {key}."}) + "\n" for i in range(rows)))
    node_env = {**env, "REFLECTION_DATA_DIR": str(folder / "data")}
    register = ("import sys, dagster as dg; from reflection_assets.paths import warehouse_path; "
                "from reflection_assets.ingest.registry import DatasetSource, register_source; "
                "register_source(warehouse_path(), sys.argv[1], DatasetSource(sys.argv[2])); "
                "dg.DagsterInstance.get().add_dynamic_partitions('datasets', [sys.argv[1]])")
    subprocess.run([sys.executable, "-c", register, key, str(source)], cwd=REPO, env=node_env, check=True,
                   timeout=180)
    return node_env


def test_two_nodes_ingest_at_once_into_one_instance_on_postgres_with_logs_in_the_bucket(
    tmp_path, shared_stores, monkeypatch
):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "shared" / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, **shared_stores.node_env(), "DAGSTER_HOME": str(home), "OMP_NUM_THREADS": "1"}
    nodes = {key: node(tmp_path, key, rows, env) for key, rows in DATASETS.items()}

    runs = [
        subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m",
             "reflection_assets.defs.definitions", "-a", "defs", "--select", "raw_instructions,rejected_rows",
             "--partition", key],
            cwd=REPO, env=node_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for key, node_env in nodes.items()
    ]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    for run, output in zip(runs, outputs):
        assert run.returncode == 0, output[-3000:]

    # A third process that has neither data folder: everything below comes from Postgres and the bucket.
    for name, value in shared_stores.node_env().items():
        monkeypatch.setenv(name, value)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        records = instance.get_run_records()
        partitions = instance.get_dynamic_partitions("datasets")
        materialized = instance.get_materialized_partitions(dg.AssetKey("raw_instructions"))
        accounted = {r.asset_materialization.partition: r.asset_materialization.metadata["accepted"].value
                     for r in instance.fetch_materializations(dg.AssetKey("raw_instructions"), limit=10).records}
    assert sorted(r.dagster_run.tags["dagster/partition"] for r in records) == sorted(DATASETS)
    assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records)
    assert sorted(partitions) == sorted(DATASETS) and materialized == set(DATASETS)
    assert accounted == DATASETS  # each node read its own file

    logs = shared_stores.object_keys("dagster/compute-logs/")
    for record in records:
        assert any(record.dagster_run.run_id in key for key in logs), logs

    import mlflow

    client = mlflow.MlflowClient(shared_stores.mlflow_url)
    experiment = client.get_experiment_by_name("reflection-tuning")
    logged = client.search_runs([experiment.experiment_id], "tags.`dagster.asset_key` = 'raw_instructions'")
    assert sorted(run.data.tags["dagster.partition_key"] for run in logged) == sorted(DATASETS)
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # the server's bucket, not a node's disk

    for node_env in nodes.values():  # the nodes kept their tables, and nothing of the instance or MLflow
        data = Path(node_env["REFLECTION_DATA_DIR"])
        assert not (data / "mlflow.db").exists() and not (data / "mlartifacts").exists()
    assert not list(home.rglob("*.db"))  # no SQLite instance beside the shared config
