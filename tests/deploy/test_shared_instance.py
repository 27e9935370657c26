"""Two machines, one deployment: deploy/shared/dagster.yaml and REFLECTION_STORAGE=shared on a real Postgres, an
S3-compatible bucket and an MLflow server on loopback (tests/support/shared_stores.py).

Two nodes, each with its own empty data folder, run `dagster job execute` at the same time on different partitions:
first a dataset partition each (ingest, reflect, score), then, after one node's selection run, an arm each (build,
train); one node then evaluates both adapters, fetching the other's from the bucket. A third process, with neither
data folder, reads from the shared stores alone the lineage of a trained row (raw -> reflected -> scored ->
selected -> trained), the runs, partitions and step logs, and the MLflow runs with their artifacts in the bucket.
Each node's data folder holds nothing but scratch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import pytest

from support.fault_server import FaultServer
from support.tiny_lm import tiny_model, tiny_tokenizer

REPO = Path(__file__).resolve().parents[2]
DATASETS = {"alpha": 3, "beta": 2}  # partition -> rows
ARMS = {"alpha": "selective|0", "beta": "full|0"}  # which node trains which arm partition
DAGSTER = str(Path(sys.executable).parent / "dagster")
DEFS = ["-m", "reflection_assets.defs.definitions", "-a", "defs"]
# The tiny random student scores every row near IFD 1: the filter's bounds are opened so the selection keeps rows.
SELECTION_CONFIG = {"ops": {"selected_dataset": {"config": {"max_ifd": 100.0, "max_rifd": 100.0}}}}
# The evaluation at its smallest: what is tested is that a node evaluates adapters another node trained.
EVAL_CONFIG = {"ops": {"eval_scores": {"config": {"items_per_suite": 2, "judge": False, "lm_eval": False}}}}

pytestmark = pytest.mark.slow  # Postgres, an object store, an MLflow server and six run processes


def node(tmp_path: Path, key: str, rows: int, env: dict) -> dict:
    """One machine: its own data folder, a source file outside it, and its environment; registers its partition."""
    source = tmp_path / f"{key}.jsonl"
    source.write_text("".join(json.dumps({"instruction": f"ROW={key}{i} Explain item {i} of {key}.",
                                          "output": f"Item {i} of {key} is {i}."}) + "\n" for i in range(rows)))
    node_env = {**env, "REFLECTION_DATA_DIR": str(tmp_path / f"node-{key}" / "data")}
    subprocess.run([sys.executable, str(REPO / "tests" / "support" / "register_partitions.py"), f"{key}={source}",
                    "--seeds", "0"], cwd=REPO, env=node_env, check=True, timeout=180)
    return node_env


def execute_on_each(nodes: dict[str, dict], job: str, partitions: dict[str, str]) -> None:
    """`dagster job execute` of `job` on every node at once, each on its own partition; all must land."""
    runs = [
        subprocess.Popen([DAGSTER, "job", "execute", *DEFS, "-j", job, "--tags",
                          json.dumps({"dagster/partition": partitions[key]})],
                         cwd=REPO, env=nodes[key], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for key in nodes
    ]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    for run, output in zip(runs, outputs, strict=True):
        assert run.returncode == 0 and "RUN_SUCCESS" in output, output[-4000:]


def test_two_nodes_run_the_graph_through_training_on_the_shared_stores(tmp_path, shared_stores, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "shared" / "dagster.yaml", home / "dagster.yaml")
    student = tmp_path / "student"  # the model cache stays node-local: here, outside both data folders
    tokenizer = tiny_tokenizer()
    tiny_model(tokenizer).save_pretrained(student)
    tokenizer.save_pretrained(student)
    run_id = uuid.uuid4().hex[:8]
    shared = {**shared_stores.node_env(), "REFLECTION_STORAGE": "shared", "REFLECTION_STORE_URL":
              shared_stores.fresh_store(), "REFLECTION_TABLES_URI": f"s3://reflection/tables-{run_id}",
              "REFLECTION_FILES_URI": f"s3://reflection/files-{run_id}"}

    with FaultServer() as teacher:
        env = {**os.environ, **shared, "DAGSTER_HOME": str(home), "OMP_NUM_THREADS": "1",
               "REFLECTION_EXECUTOR": "in_process", "REFLECTION_STUDENT": str(student),
               "REFLECTION_TEACHER_BASE_URL": teacher.url, "REFLECTION_TEACHER_MODEL": "fault-model"}
        nodes = {key: node(tmp_path, key, rows, env) for key, rows in DATASETS.items()}
        execute_on_each(nodes, "dataset_job", dict(zip(DATASETS, DATASETS, strict=True)))
        config = tmp_path / "selection.yaml"
        config.write_text(json.dumps(SELECTION_CONFIG))
        selection = subprocess.run([DAGSTER, "job", "execute", *DEFS, "-j", "selection_job", "-c", str(config)],
                                   cwd=REPO, env=nodes["alpha"], capture_output=True, text=True, timeout=600)
        assert selection.returncode == 0, (selection.stdout + selection.stderr)[-4000:]
        execute_on_each(nodes, "arms_job", ARMS)
        config.write_text(json.dumps(EVAL_CONFIG))  # on the node that did not train `selective`
        evaluation = subprocess.run([DAGSTER, "job", "execute", *DEFS, "-j", "evaluation_job", "-c", str(config)],
                                    cwd=REPO, env=nodes["beta"], capture_output=True, text=True, timeout=600)
        assert evaluation.returncode == 0, (evaluation.stdout + evaluation.stderr)[-4000:]

    # A third process that has neither data folder: everything below comes from the shared stores.
    for name, value in shared.items():
        monkeypatch.setenv(name, value)
    from reflection_assets.selection.lineage import LINEAGE_SQL
    from reflection_assets.training.lineage import TRAINED_ON_SQL
    from resources.warehouse import Warehouse

    warehouse = Warehouse(database=str(tmp_path / "third" / "warehouse.duckdb"),
                          tables_uri=shared["REFLECTION_TABLES_URI"], store_url=shared["REFLECTION_STORE_URL"],
                          files_uri=shared["REFLECTION_FILES_URI"])
    with warehouse.connection(read_only=True) as conn:
        (row_id,) = conn.execute("SELECT row_id FROM trained_rows t JOIN raw_instructions r USING (row_id) "
                                 "WHERE t.arm = 'selective' AND r.dataset = 'beta' LIMIT 1").fetchone()
        stages = [stage for (stage,) in conn.execute(f"SELECT stage FROM ({LINEAGE_SQL})", [row_id]).fetchall()]
        trained_on = conn.execute(TRAINED_ON_SQL, [row_id]).df()
        checkpoints = conn.execute("SELECT arm, status, adapter_path, mlflow_run_id FROM lora_checkpoint").df()
        evaluated = {model for (model,) in conn.execute("SELECT DISTINCT model FROM eval_scores").fetchall()}
    assert stages[0] == "raw" and {"instruction_reflection", "response_score", "selection", "arm"} <= set(stages)
    assert sorted(trained_on["arm"]) == ["full", "selective"]  # a beta row, trained by both nodes' arms
    third = tmp_path / "third"  # as a user on a third machine asks for it: the CLI, writing nothing
    asked = subprocess.run([str(Path(sys.executable).parent / "reflection-tuning"), "lineage", row_id, "--json"],
                           cwd=REPO, env={**os.environ, **shared, "REFLECTION_DATA_DIR": str(third)},
                           capture_output=True, text=True, timeout=180)
    assert asked.returncode == 0, asked.stderr[-3000:]
    answer = json.loads(asked.stdout)
    assert [step["stage"] for step in answer["lineage"]] == stages
    assert sorted(t["arm"] for t in answer["trained_into"]) == ["full", "selective"] and not third.exists()
    assert sorted(checkpoints["arm"]) == ["full", "selective"] and set(checkpoints["status"]) == {"trained"}
    files = shared["REFLECTION_FILES_URI"]
    for path in checkpoints["adapter_path"]:
        assert path.startswith(f"{files}/checkpoints/") and path.endswith("/adapter"), path
    prefix = files.removeprefix("s3://reflection/") + "/checkpoints/"
    published = shared_stores.object_keys(prefix)
    assert sum(key.endswith("/FINISHED") for key in published) == 2, published
    assert any(key.endswith("adapter/adapter_model.safetensors") for key in published)
    assert shared_stores.object_keys(files.removeprefix("s3://reflection/") + "/exports/selected/")
    assert {"base", "selective", "full"} <= evaluated  # beta evaluated alpha's adapter, fetched from the bucket
    fetched = Path(nodes["beta"]["REFLECTION_DATA_DIR"]) / "scratch" / "adapters"
    assert len(list(fetched.glob("*/adapter/adapter_config.json"))) == 2

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        selected = instance.get_latest_materialization_event(dg.AssetKey("selected_dataset")).asset_materialization
        card = selected.metadata["export_card"].value  # where readers find the export: the bucket
        records = instance.get_run_records()
        materialized = instance.get_materialized_partitions(dg.AssetKey("raw_instructions"))
        trained = instance.get_materialized_partitions(dg.AssetKey("lora_checkpoint"))
    assert card == f"{files}/exports/selected/README.md"
    assert shared_stores.object_keys(card.removeprefix("s3://reflection/"))
    assert len(records) == 6 and all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records)
    assert materialized == set(DATASETS) and {str(key) for key in trained} == set(ARMS.values())
    logs = shared_stores.object_keys("dagster/compute-logs/")
    for record in records:
        assert any(record.dagster_run.run_id in key for key in logs), logs

    import mlflow

    client = mlflow.MlflowClient(shared_stores.mlflow_url)
    experiment = client.get_experiment_by_name("reflection-tuning")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # the server's bucket, not a node's disk
    for run_id_ in checkpoints["mlflow_run_id"]:
        artifacts = [item.path for item in client.list_artifacts(run_id_)]
        assert "adapter" in artifacts and "trained_row_ids.txt" in artifacts, artifacts
    assert shared_stores.object_keys("mlflow/")  # the artifacts' bytes are in the bucket

    for node_env in nodes.values():  # nothing on a node's disk but scratch
        data = Path(node_env["REFLECTION_DATA_DIR"])
        left = sorted(str(p.relative_to(data)) for p in data.iterdir()) if data.exists() else []
        assert left in ([], ["scratch"]), left
    assert not list(home.rglob("*.db"))  # no SQLite instance beside the shared config
