"""`lora_checkpoint` through Dagster: trains, records the contract row, reuses when unchanged, skips with a reason."""

from __future__ import annotations

import json
import math
from pathlib import Path

import dagster as dg
import duckdb

from reflection_assets.defs.definitions import ASSET_MODULES
from reflection_assets.defs.deployment import build_resources
from reflection_assets.paths import warehouse_path
from reflection_assets.training.lineage import TRAINED_ON_SQL
from tests.support.console_keys import assert_console_reads_written_keys
from tests.support.training import materialize_checkpoint, sample_pairs, seed_arm_tables

ASSETS = dg.load_assets_from_modules(ASSET_MODULES)
FAST = {
    "rank": 4,
    "alpha": 8,
    "dropout": 0.0,
    "epochs": 1,
    "batch_size": 4,
    "learning_rate": 5e-3,
    "max_length": 128,
    "min_rows": 2,
}
CONTRACT = [
    "arm",
    "status",
    "skipped_reason",
    "checkpoint_key",
    "adapter_path",
    "base_model",
    "base_fingerprint",
    "rows_given",
    "rows_trained",
    "first_loss",
    "final_loss",
    "train_seconds",
    "mlflow_run_id",
]


def materialize(instance: dg.DagsterInstance, base: str, **config) -> dg.ExecuteInProcessResult:
    return materialize_checkpoint(instance, base, {**FAST, **config})


def stored_row() -> dict:
    with duckdb.connect(str(warehouse_path()), read_only=True) as conn:
        frame = conn.execute("SELECT * FROM lora_checkpoint").df()
    assert len(frame) == 1
    return frame.iloc[0].to_dict()


def test_trains_then_reuses_with_one_mlflow_run(dagster_instance, tiny_base):
    import mlflow

    seed_arm_tables(dagster_instance, 8)
    first = materialize(dagster_instance, tiny_base)
    assert first.success
    meta = first.asset_materializations_for_node("lora_checkpoint")[0].metadata
    row = stored_row()
    assert set(CONTRACT) <= set(row)
    assert row["status"] == "trained" and row["skipped_reason"] == "" and row["rows_trained"] == 8
    assert row["base_model"] == tiny_base and Path(row["adapter_path"]).is_absolute()
    assert (Path(row["adapter_path"]) / "adapter_model.safetensors").is_file()
    # two steps: the run's one mean loss, no first-window figure to compare (training.losses)
    assert math.isnan(row["first_loss"]) and math.isfinite(row["final_loss"]) and meta["loss_window"].value == "run"
    assert meta["mlflow_run_id"].value == row["mlflow_run_id"] and "loss_curve" in meta
    assert_console_reads_written_keys("lora_checkpoint", meta, absent={"skipped_reason", "first_loss"})
    with duckdb.connect(str(warehouse_path()), read_only=True) as conn:
        trained = conn.execute("SELECT row_id FROM trained_rows WHERE arm = 'selective' ORDER BY row_id").fetchall()
    assert [r[0] for r in trained] == [p.row_id for p in sample_pairs(8)]
    with duckdb.connect(str(warehouse_path()), read_only=True) as conn:
        trained_on = conn.execute(TRAINED_ON_SQL, ["r03"]).fetchall()
    assert trained_on == [("selective", "0", row["checkpoint_key"], "trained", row["adapter_path"], tiny_base,
                           row["mlflow_run_id"])]

    mlflow.set_tracking_uri(build_resources()["mlflow"].resolved_uri())
    run = mlflow.get_run(row["mlflow_run_id"])
    assert run.data.tags["dagster.partition_key"] == "selective|0" and run.data.tags["dagster.run_id"] == first.run_id
    losses = mlflow.tracking.MlflowClient().get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in losses] == list(range(1, row["steps"] + 1))  # one point per step, none twice

    again = materialize(dagster_instance, tiny_base)
    assert again.success
    reused = stored_row()
    assert reused["status"] == "reused" and reused["checkpoint_key"] == row["checkpoint_key"]
    assert reused["mlflow_run_id"] == row["mlflow_run_id"]  # the same run describes the same adapter
    assert (
        len(
            mlflow.search_runs(
                experiment_names=[build_resources()["mlflow"].experiment_name],
                filter_string="tags.`dagster.asset_key` = 'lora_checkpoint'",
            )
        )
        == 1
    )


def test_tiny_arm_and_disabled_arm_are_reasoned_skips(dagster_instance, tiny_base):
    seed_arm_tables(dagster_instance, 3)
    result = materialize(dagster_instance, tiny_base, min_rows=4)
    assert result.success
    row = stored_row()
    assert row["status"] == "skipped" and "fewer than min_rows=4" in row["skipped_reason"]
    assert row["adapter_path"] == "" and math.isnan(row["final_loss"])
    meta = result.asset_materializations_for_node("lora_checkpoint")[0].metadata
    assert "min_rows=4" in meta["skipped_reason"].value
    assert_console_reads_written_keys("lora_checkpoint", meta, absent={"first_loss", "final_loss", "loss_window"})

    disabled = materialize(dagster_instance, tiny_base, enabled=False)
    assert disabled.success and "disabled" in stored_row()["skipped_reason"]


def test_bad_config_fails_with_a_message(dagster_instance, tiny_base):
    seed_arm_tables(dagster_instance, 4)
    result = materialize(dagster_instance, tiny_base, dropout=2.0)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "dropout must be in [0, 1)" in json.dumps(str(failure.event_specific_data.error.message))


def test_interrupted_training_resumes_when_materialized_again(dagster_instance, tiny_base):
    from transformers import TrainerCallback

    from reflection_assets.defs.assets.training import LoraCheckpointConfig
    from reflection_assets.paths import checkpoints_dir
    from reflection_assets.training import train_lora, training_pairs

    class Killed(RuntimeError):
        pass

    class KillAtStep3(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise Killed("the process died at step 3")

    seed_arm_tables(dagster_instance, 8)
    config = {**FAST, "save_steps": 2, "batch_size": 2}
    with duckdb.connect(str(warehouse_path()), read_only=True) as conn:
        arm, raw = conn.execute("SELECT * FROM arm_datasets").df(), conn.execute("SELECT * FROM raw_instructions").df()
    settings = LoraCheckpointConfig(**config).settings()
    try:  # the same call the asset makes, killed after the step-2 save
        train_lora(training_pairs(arm, raw), tiny_base, settings, checkpoints_dir(), "selective",
                   callbacks=[KillAtStep3()], log=lambda _: None)
    except Killed:
        pass

    result = materialize(dagster_instance, tiny_base, **config)
    assert result.success
    meta = result.asset_materializations_for_node("lora_checkpoint")[0].metadata
    assert meta["status"].value == "trained" and meta["resumed_from_step"].value == 2 and meta["steps"].value == 4
    import mlflow

    mlflow.set_tracking_uri(build_resources()["mlflow"].resolved_uri())
    history = mlflow.tracking.MlflowClient().get_metric_history(stored_row()["mlflow_run_id"], "loss")
    assert [m.step for m in history] == [1, 2, 3, 4]  # the curve continues from the checkpoint, no step twice


def test_the_asset_config_has_every_setting_with_its_default():
    from dataclasses import fields

    from reflection_assets.defs.assets.training import LoraCheckpointConfig
    from reflection_assets.training.settings import LoraSettings

    # A setting the config lacks would silently take the dataclass default: the field sets must match.
    launch_only = {"enabled", "num_processes", "accelerate_config"}  # read by the asset, not by the trainer
    assert set(LoraCheckpointConfig.model_fields) - launch_only == {f.name for f in fields(LoraSettings)}
    assert LoraCheckpointConfig().settings() == LoraSettings()
