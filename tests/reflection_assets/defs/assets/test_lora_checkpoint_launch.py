"""`lora_checkpoint` across two real processes (torchrun, gloo on this CPU) through Dagster Pipes.

- Two processes at 2 rows each train together: one adapter, one MLflow run with each step logged
  once, the same trained-on rows, and the per-step loss of one process at 4 rows (the same global
  batch and seed) within 1e-4. Why that tolerance: with dropout off the two runs compute the same
  sums in another order (the gradient is all-reduced from two half-batches, each padded on its own);
  measured here the losses differ by at most ~5e-7 (relative 1e-7, fp32 rounding), so 1e-4 leaves
  room for other CPUs' kernels while any real difference (a row seen twice, a batch of 2 instead of
  4: differences of 1e-3 to 1e-1 here) fails.
- One rank SIGKILLed mid-training: the step fails within the timeout, naming the rank that died;
  materializing again resumes from the last complete checkpoint and finishes.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
import threading
import time

import dagster as dg
import duckdb
import pytest

from reflection_assets.defs.definitions import ASSET_MODULES
from reflection_assets.defs.deployment import build_resources
from reflection_assets.paths import checkpoints_dir, warehouse_path
from tests.support.training import materialize_checkpoint, seed_arm_tables

pytestmark = pytest.mark.slow  # each launch starts two Python processes that import torch
ASSETS = dg.load_assets_from_modules(ASSET_MODULES)
ROWS = 16
COMMON = {"rank": 4, "alpha": 8, "dropout": 0.0, "epochs": 1, "learning_rate": 5e-3, "max_length": 128,
          "min_rows": 2, "warmup": 0, "seed": 3}


def materialize(instance: dg.DagsterInstance, base: str, **config) -> dg.ExecuteInProcessResult:
    return materialize_checkpoint(instance, base, {**COMMON, **config})


def metadata(result: dg.ExecuteInProcessResult) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node("lora_checkpoint")[0].metadata.items()}


def stored_row() -> dict:
    with duckdb.connect(str(warehouse_path()), read_only=True) as conn:
        row = conn.execute("SELECT * FROM lora_checkpoint").df().iloc[0].to_dict()
        trained = [r[0] for r in conn.execute("SELECT row_id FROM trained_rows ORDER BY row_id").fetchall()]
    return {**row, "trained_rows": trained}


def step_losses(run_id: str) -> dict[int, float]:
    import mlflow

    mlflow.set_tracking_uri(build_resources()["mlflow"].resolved_uri())
    history = mlflow.tracking.MlflowClient().get_metric_history(run_id, "loss")
    steps = [m.step for m in history]
    assert len(steps) == len(set(steps)), f"a step logged twice: {steps}"
    return {m.step: m.value for m in history}


def test_two_processes_train_as_one_with_the_same_global_batch(dagster_instance, tiny_base):
    seed_arm_tables(dagster_instance, ROWS)

    one = materialize(dagster_instance, tiny_base, batch_size=4)
    assert one.success
    single = stored_row()

    two = materialize(dagster_instance, tiny_base, batch_size=2, num_processes=2, collective_timeout=120)
    assert two.success
    launched = stored_row()
    logs = [e.message for e in dagster_instance.all_logs(two.run_id) if e.user_message]
    assert any("training 16 rows on cpu:0 x 2 processes" in m for m in logs)  # the main rank's log, via Pipes
    assert any(m.startswith("step 1/4") and "ETA" in m for m in logs)  # progress with rate and ETA

    assert launched["status"] == "trained" and launched["steps"] == single["steps"] == ROWS // 4
    assert launched["checkpoint_key"] != single["checkpoint_key"]  # the process count is part of the key
    assert launched["trained_rows"] == single["trained_rows"] and len(launched["trained_rows"]) == ROWS
    assert launched["tokens_seen"] == single["tokens_seen"]  # every row once per epoch, not once per process
    finished = sorted(p.parent.name for p in (checkpoints_dir() / "selective").glob("*/FINISHED"))
    assert finished == sorted([single["checkpoint_key"], launched["checkpoint_key"]])  # one adapter per run
    assert not list(checkpoints_dir().glob(".launch-*"))  # the launch's rows and reports are cleaned up

    single_losses, launched_losses = step_losses(single["mlflow_run_id"]), step_losses(launched["mlflow_run_id"])
    assert sorted(launched_losses) == list(range(1, single["steps"] + 1))
    for step, loss in single_losses.items():
        assert launched_losses[step] == pytest.approx(loss, abs=1e-4), step

    import mlflow

    runs = mlflow.search_runs(experiment_names=[build_resources()["mlflow"].experiment_name],
                              filter_string=f"tags.`dagster.run_id` = '{two.run_id}'")
    assert len(runs) == 1  # one MLflow run for the launched training, not one per rank


def test_a_user_error_in_the_launched_processes_is_named_and_not_retried(dagster_instance, tiny_base, tmp_path):
    seed_arm_tables(dagster_instance, 4)
    result = materialize(dagster_instance, str(tmp_path / "no-such-model"), num_processes=2)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).event_specific_data
    message = failure.error.message
    assert "failed across 2 processes: rank " in message and "no-such-model: not a model directory" in message


# Every training step takes >= 0.4 s in the launched processes (a slow device), so the kill lands mid-run.
SLOW_STEPS = textwrap.dedent(
    """
    import time
    import transformers

    _step = transformers.Trainer.training_step

    def training_step(*args, **kwargs):
        time.sleep(0.4)
        return _step(*args, **kwargs)

    transformers.Trainer.training_step = training_step
    """
)


def test_a_killed_rank_fails_the_step_and_the_next_run_resumes(dagster_instance, tiny_base, tmp_path, monkeypatch):
    from reflection_assets.training.checkpoints import CheckpointLayout

    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SLOW_STEPS)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hooks), os.environ.get("PYTHONPATH", "")]))
    seed_arm_tables(dagster_instance, ROWS)
    config = {"batch_size": 1, "save_steps": 2, "num_processes": 2, "collective_timeout": 60}  # 8 steps

    killed: dict = {}

    def kill_rank_1_after_a_checkpoint() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            layouts = [CheckpointLayout(f) for f in (checkpoints_dir() / "selective").glob("*/")]
            reports = list(checkpoints_dir().glob(".launch-*/ranks/rank-1.started.json"))
            if reports and any(layout.last_trainer_checkpoint() for layout in layouts):
                pid = json.loads(reports[0].read_text())["pid"]
                os.kill(pid, signal.SIGKILL)
                killed["pid"], killed["at"] = pid, time.monotonic()
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_rank_1_after_a_checkpoint, daemon=True)
    watcher.start()
    started = time.monotonic()
    first = materialize(dagster_instance, tiny_base, **config)
    watcher.join(timeout=5)
    assert killed, "rank 1 was never killed (training ended or never saved a checkpoint)"
    assert not first.success
    assert time.monotonic() - killed["at"] < 60, "the step did not fail within the collective timeout"
    message = next(e for e in first.all_events if e.is_step_failure).event_specific_data.error.message
    assert f"rank 1 (pid {killed['pid']}) died without a report" in message, message
    (layout,) = [CheckpointLayout(f) for f in (checkpoints_dir() / "selective").glob("*/")]
    assert not layout.is_finished() and layout.last_trainer_checkpoint() is not None

    monkeypatch.delenv("PYTHONPATH")
    again = materialize(dagster_instance, tiny_base, **config)
    assert again.success, time.monotonic() - started
    meta = metadata(again)
    assert meta["status"] == "trained" and meta["resumed_from_step"] >= 2 and meta["steps"] == ROWS // 2
    assert layout.is_finished()
    assert sorted(step_losses(stored_row()["mlflow_run_id"])) == list(range(1, ROWS // 2 + 1))
