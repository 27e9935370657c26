"""The teacher's API key never reaches Dagster's event log, metadata, MLflow, the warehouse or exports."""

import json
from pathlib import Path

import dagster as dg
import pytest

from reflection_assets.defs.definitions import ASSET_MODULES
from reflection_assets.defs.deployment import build_resources
from reflection_assets.defs.partitions import DATASETS
from reflection_assets.paths import data_dir
from resources.student import StudentModel
from resources.teacher_http import OpenAICompatibleTeacher
from support.fault_server import FaultServer

pytestmark = pytest.mark.slow

SENTINEL = "sk-SENTINEL-0d9e-never-log-me"
ASSETS = dg.load_assets_from_modules(ASSET_MODULES)
CHECKS = dg.load_asset_checks_from_modules(ASSET_MODULES)
PER_DATASET = ["raw_instructions", "rejected_rows", "raw_ifd_scores", "instruction_reflections",
               "instruction_ifd_scores", "response_reflections", "response_scores"]


def _files_text(folder: Path) -> str:
    return "".join(p.read_bytes().decode("latin-1") for p in folder.rglob("*") if p.is_file())


def test_api_key_stays_out_of_every_store(tmp_path, monkeypatch, dagster_instance, capfd, tiny_base):
    rows = [{"instruction": f"ROW=r{i} FAULT={fault} Name a prime number.", "output": "7"}
            for i, fault in enumerate(["ok", "429x1", "500xalways", "echoauth", "unparsable"])]
    source = tmp_path / "rows.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    monkeypatch.setenv("REFLECTION_TEACHER_API_KEY", SENTINEL)
    dagster_instance.add_dynamic_partitions(DATASETS, ["rows"])

    with FaultServer(retry_after="0.1") as server:
        resources = build_resources()
        resources["student"] = StudentModel(model=tiny_base)  # the key's paths are the teacher's; any student will do
        resources["teacher"] = OpenAICompatibleTeacher(
            base_url=server.url, model="served-model", api_key=dg.EnvVar("REFLECTION_TEACHER_API_KEY"),
            timeout_s=2.0, max_attempts=3, backoff_initial_s=0.01, backoff_max_s=0.05,
        )
        result = dg.materialize(
            [*ASSETS, *CHECKS], selection=PER_DATASET + ["selected_dataset"], partition_key="rows",
            instance=dagster_instance, resources=resources,
            run_config={"ops": {"raw_instructions": {"config": {"source": str(source)}}}},
        )
        assert result.success
        assert server.auth_headers and set(server.auth_headers) == {f"Bearer {SENTINEL}"}  # the key was used

    outcomes = result.asset_materializations_for_node("instruction_reflections")[0].metadata
    assert outcomes["outcome_teacher_error"].value >= 1  # the failing rows ran through error paths too

    records = dagster_instance.all_logs(result.run_id)
    texts = {
        "event log": "\n".join(repr(r) for r in records),
        "stdout/stderr": "".join(capfd.readouterr()),
        "data folder (warehouse, MLflow store, artifacts, exports)": _files_text(data_dir()),
    }
    for where, text in texts.items():
        assert SENTINEL not in text, f"API key found in {where}"
    assert "mlflow.db" in {p.name for p in data_dir().iterdir()}
