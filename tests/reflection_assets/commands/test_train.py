"""`reflection-tuning train` on a data file: an adapter folder without Dagster, merge included; bad rows: one line."""

from __future__ import annotations

import json
from pathlib import Path

from reflection_assets.cli import main
from tests.support.training import sample_pairs

FAST = ["--epochs", "1", "--batch-size", "2", "--max-length", "128", "--min-rows", "2", "--learning-rate", "5e-3"]


def write_rows(path: Path, n: int) -> Path:
    rows = [
        {
            "id": p.row_id,
            "instruction": p.instruction,
            "output": p.output,
            "system": p.system,
            "history": [{"role": t.role, "content": t.content} for t in p.history],
        }
        for p in sample_pairs(n)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_data_file_to_adapter_and_merged_model(tiny_base, tmp_path, capsys):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    data = write_rows(tmp_path / "pairs.jsonl", 6)
    merged_dir = tmp_path / "merged"
    code = main(
        [
            "train",
            "--data",
            str(data),
            "--student",
            tiny_base,
            "--output",
            str(tmp_path / "ckpt"),
            "--merge-into",
            str(merged_dir),
            *FAST,
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["status"] == "trained" and summary["rows_trained"] == 6
    adapter = Path(summary["adapter_path"])
    assert adapter.parent.parent == (tmp_path / "ckpt" / "pairs").resolve()

    ids = torch.tensor([[5, 6, 7, 8]])
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base), str(adapter)).eval()
    merged = AutoModelForCausalLM.from_pretrained(str(merged_dir)).eval()
    with torch.no_grad():
        assert torch.allclose(tuned(ids).logits, merged(ids).logits, atol=1e-4)

    again = main(["train", "--data", str(data), "--student", tiny_base, "--output", str(tmp_path / "ckpt"), *FAST])
    assert again == 0 and json.loads(capsys.readouterr().out.strip().splitlines()[-1])["status"] == "reused"


def test_bad_row_names_file_and_line(tmp_path, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"instruction": "a", "output": "b"}\n{"instruction": 3, "output": "b"}\n')
    assert main(["train", "--data", str(data), "--student", "unused"]) == 2
    assert f"{data}:2: field 'instruction' must be a string" in capsys.readouterr().err


def test_missing_arm_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--arm", "selective", "--warehouse", str(tmp_path / "none.duckdb")]) == 2
    assert "no warehouse" in capsys.readouterr().err


def test_an_arm_is_read_from_the_warehouse_the_environment_names(isolated_data_dir):
    import duckdb

    from reflection_assets.commands.train import arm_pairs
    from reflection_assets.paths import warehouse_path
    from tests.reflection_assets.selection.conftest import build_pipeline, lineage_tables

    tables = lineage_tables(build_pipeline())
    tables["arm_datasets"] = tables["arm_datasets"].assign(seed="0")  # as the asset stores it
    with duckdb.connect(str(warehouse_path())) as conn:
        for name in ("raw_instructions", "arm_datasets"):
            conn.register("frame", tables[name])
            conn.execute(f"CREATE TABLE {name} AS SELECT * FROM frame")
    expected = tables["arm_datasets"].query("arm == 'selective'")
    assert len(arm_pairs("selective", None)) == len(expected) > 0  # no --warehouse: data/warehouse.duckdb
