"""`reflection-tuning lineage ROW_ID` on the local warehouse file (the shared stores' run of it:
tests/deploy/test_shared_instance.py): the row's stages, the adapters it was trained into, and clear answers for
a row that is not there or a graph not built yet."""

from __future__ import annotations

import json

import duckdb
import pandas as pd
import pytest

from reflection_assets.cli import main
from reflection_assets.paths import warehouse_path
from reflection_assets.training.lineage import record_trained_rows
from tests.reflection_assets.selection.conftest import lineage_tables, pipeline  # noqa: F401 - a fixture


@pytest.fixture
def built_warehouse(pipeline, isolated_data_dir):  # noqa: F811 - the imported fixture
    tables = {
        **lineage_tables(pipeline),
        "lora_checkpoint": pd.DataFrame([{"arm": "selective", "checkpoint_key": "k1", "status": "trained",
                                          "adapter_path": "/ckpt/selective/k1/adapter", "base_model": "tiny",
                                          "mlflow_run_id": "run-1"}]),
    }
    with duckdb.connect(str(warehouse_path())) as conn:
        for name, frame in tables.items():
            conn.register("frame", frame)
            conn.execute(f"CREATE TABLE {name} AS SELECT * FROM frame")
            conn.unregister("frame")
    record_trained_rows(warehouse_path(), "selective", 0, "k1", ["r0", "r4"])
    return warehouse_path()


def test_a_trained_row_is_followed_to_its_adapter(built_warehouse, capsys):
    assert main(["lineage", "r0"]) == 0
    out = capsys.readouterr().out
    assert "Lineage of row r0:" in out and "| selection" in out and "selected" in out
    assert "Trained into:" in out and "/ckpt/selective/k1/adapter" in out

    assert main(["lineage", "r0", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["lineage"][0]["stage"] == "raw" and answer["trained_into"][0]["checkpoint_key"] == "k1"


def test_a_row_not_there_and_a_graph_not_built_are_said_plainly(built_warehouse, capsys, tmp_path, monkeypatch):
    assert main(["lineage", "nope"]) == 1
    assert "row 'nope' is not in" in capsys.readouterr().err
    monkeypatch.setenv("REFLECTION_WAREHOUSE", str(tmp_path / "empty.duckdb"))
    assert main(["lineage", "r0"]) == 2
    assert "has no raw_instructions, instruction_reflections" in capsys.readouterr().err
    monkeypatch.setenv("REFLECTION_STORAGE", "cloud")
    assert main(["lineage", "r0"]) == 2
    assert "REFLECTION_STORAGE='cloud'" in capsys.readouterr().err
