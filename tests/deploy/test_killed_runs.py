"""Runs killed with SIGKILL mid-stage, as an operator's run would die (OOM killer, a lost node):
training resumes from its last checkpoint, evaluation reuses the generations it had saved.

Each run is `dagster asset materialize` on the real code location and a real instance
(`DAGSTER_HOME` with the repo's dagster.yaml), configured through the deployment's environment
variables, in its own process. The process is killed once the stage has saved something; the run is
then still STARTED, `reflection-tuning recover-runs` marks it failed, and materializing again
finishes the work without paying for what was saved. A tiny model stands in for the student; the
worker sleeps a little per training step / generation batch (a slow device), so the kill lands
mid-stage on any machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from reflection_assets.cli import main as cli
from reflection_assets.evaluation.suites import GENERATED_SUITES
from reflection_assets.paths import checkpoints_dir, warehouse_path
from reflection_assets.training.checkpoints import CheckpointLayout

SHORT_ANSWERS = dict.fromkeys(GENERATED_SUITES, 8)  # tokens per generated suite: fast, every answer cut

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # two killed runs and two re-runs, each a Dagster process

# `dagster` itself, behind a slow device: every training step and generation batch takes >= 0.3 s.
WORKER = textwrap.dedent(
    """
    import sys, time
    import transformers
    from reflection_assets.generation.engine import GenerationEngine

    def slowed(method):
        def slow(*args, **kwargs):
            time.sleep(0.3)
            return method(*args, **kwargs)
        return slow

    transformers.Trainer.training_step = slowed(transformers.Trainer.training_step)
    GenerationEngine.run_batch = slowed(GenerationEngine.run_batch)
    from dagster._cli import main
    sys.argv[0] = "dagster"
    sys.exit(main())
    """
)
TRAINING = {"rank": 4, "alpha": 8, "dropout": 0.0, "epochs": 1, "batch_size": 1, "learning_rate": 5e-3,
            "max_length": 128, "min_rows": 2, "save_steps": 2}
TRAINING_ROWS = 16  # 16 optimizer steps, a checkpoint every 2
# Six items a suite: a pass long enough (72 generations, small batches, each saved as it finishes) that the kill
# lands mid-pass even when the poller waits on the run's lock under load (with 3, CI run 16 saw all 36 saved first).
EVALUATION = {"items_per_suite": 6, "max_new_tokens": SHORT_ANSWERS, "judge": False, "lm_eval": False,
              "batch_tokens": 120}


@pytest.fixture
def home(tmp_path, monkeypatch, tiny_student):
    folder = tmp_path / "home"
    folder.mkdir()
    (folder / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(folder))
    monkeypatch.setenv("REFLECTION_STUDENT", tiny_student)  # the deployment's student, as a user sets it
    monkeypatch.setenv("REFLECTION_TEACHER_MODEL", tiny_student)
    monkeypatch.delenv("REFLECTION_TEACHER_BASE_URL", raising=False)
    return folder


@pytest.fixture(scope="module")
def tiny_student(tmp_path_factory) -> str:
    from tests.support.training import save_tiny_model

    return str(save_tiny_model(tmp_path_factory.mktemp("student")))


def materialize_args(asset: str, partition: str | None, config: dict) -> list[str]:
    """`dagster asset materialize` of one asset (partition) of the real code location, with its config."""
    args = ["asset", "materialize", "-m", "reflection_assets.defs.definitions", "--select", asset,
            "--config-json", json.dumps({"ops": {asset: {"config": config}}})]
    return args + (["--partition", partition] if partition else [])


def kill_when(args: list[str], saved: Callable[[], bool], timeout_s: float = 300) -> None:
    """Start the run's process on the slow device, SIGKILL it as soon as `saved()` holds (mid-stage)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    worker = subprocess.Popen([sys.executable, "-c", WORKER, *args], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while not saved():
        assert worker.poll() is None, f"the run ended before the kill: {worker.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "nothing was saved in time"
        time.sleep(0.05)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)
    assert worker.returncode == -signal.SIGKILL


def started_runs(instance: dg.DagsterInstance) -> list:
    return instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))


def recover(instance: dg.DagsterInstance) -> str:
    """What a killed run leaves behind, and what `recover-runs` does about it: the killed run's id."""
    (killed,) = started_runs(instance)  # the kill leaves it STARTED: it would hold the pool and block automation
    assert cli(["recover-runs"]) == 0
    assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
    assert started_runs(instance) == []
    return killed.run_id


def rerun(instance: dg.DagsterInstance, asset: str, partition: str | None, config: dict) -> dict:
    """Materialize again (an operator's re-execution) and return the new materialization's metadata."""
    dagster = str(Path(sys.executable).parent / "dagster")
    finished = subprocess.run([dagster, *materialize_args(asset, partition, config)], cwd=REPO,
                              env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    event = instance.get_latest_materialization_event(dg.AssetKey(asset))
    return {key: value.value for key, value in event.asset_materialization.metadata.items()}


def saved_trainer_checkpoint() -> bool:
    folders = list((checkpoints_dir() / "selective").glob("*/"))
    return any(CheckpointLayout(folder).last_trainer_checkpoint() for folder in folders)


def test_training_killed_mid_run_resumes_from_its_checkpoint(home):
    from tests.support.training import seed_arm_tables

    instance = dg.DagsterInstance.get()
    seed_arm_tables(instance, TRAINING_ROWS)
    kill_when(materialize_args("lora_checkpoint", "selective|0", TRAINING), saved_trainer_checkpoint)
    (folder,) = (checkpoints_dir() / "selective").glob("*/")
    layout = CheckpointLayout(folder)
    saved_step = int(Path(layout.last_trainer_checkpoint()).name.split("-")[1])
    assert 2 <= saved_step < TRAINING_ROWS and not layout.is_finished()
    killed = recover(instance)

    meta = rerun(instance, "lora_checkpoint", "selective|0", TRAINING)
    assert meta["status"] == "trained" and meta["rows_trained"] == TRAINING_ROWS
    assert meta["resumed_from_step"] >= saved_step and meta["steps"] == TRAINING_ROWS
    assert layout.is_finished() and not layout.trainer_dir.exists()  # the intermediate saves are gone
    import mlflow

    from reflection_assets.defs.deployment import build_resources

    mlflow.set_tracking_uri(build_resources()["mlflow"].resolved_uri())
    run = mlflow.get_run(meta["mlflow_run_id"])
    assert run.data.tags["dagster.run_id"] != killed  # the killed run logged nothing to MLflow
    history = mlflow.tracking.MlflowClient().get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == list(range(1, TRAINING_ROWS + 1))  # the whole curve, no step twice
    print(f"training: killed after the step-{saved_step} checkpoint, resumed from step "
          f"{meta['resumed_from_step']} of {TRAINING_ROWS}")


def seed_checkpoint_tables(student: str, root: Path) -> None:
    """`eval_scores`'s upstream tables: two trained arms (tiny adapters saved here), the rest skipped."""
    import torch
    from peft import get_peft_model

    from reflection_assets.selection.columns import ARMS
    from reflection_assets.training.statuses import CHECKPOINT_COLUMNS
    from tests.reflection_assets.evaluation.conftest import lora_config
    from tests.support.tiny_lm import tiny_model, tiny_tokenizer
    from tests.support.training import write_tables

    trained = {"selective": 11, "random": 12}
    for arm, seed in trained.items():
        base = tiny_model(tiny_tokenizer())  # seeds torch itself: seed the adapter after it
        torch.manual_seed(seed)
        get_peft_model(base, lora_config()).save_pretrained(root / arm)
    checkpoints = pd.DataFrame(
        [
            {
                "arm": arm, "seed": "0", "status": "trained" if arm in trained else "skipped",
                "skipped_reason": "" if arm in trained else "no rows", "checkpoint_key": f"key-{arm}",
                "adapter_path": str(root / arm) if arm in trained else "", "base_model": student,
                "base_fingerprint": "tiny", "rows_given": 2, "rows_trained": 2 if arm in trained else 0,
                "first_loss": 5.0, "final_loss": 4.0, "train_seconds": 1.0, "mlflow_run_id": "", "steps": 1,
                "tokens_seen": 10, "template": "",
            }
            for arm in ARMS
        ],
        columns=CHECKPOINT_COLUMNS,
    )
    arms = pd.DataFrame([{"arm": arm, "row_id": f"{arm}-1", "instruction": "Name a colour.", "input": "",
                          "output": "Blue.", "source": "raw", "seed": "0"} for arm in trained])
    write_tables({"lora_checkpoint": checkpoints, "arm_datasets": arms})


def saved_generations() -> int:
    from reflection_assets.evaluation.cache import EvalOutputCache

    if not warehouse_path().exists():
        return 0
    try:
        return EvalOutputCache(warehouse_path()).count("generation")
    except duckdb.CatalogException:  # the table is made when the run first writes
        return 0


def test_evaluation_killed_mid_pass_reuses_the_saved_generations(home, tiny_student, tmp_path):
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions("seeds", ["0"])  # the arm x seed tables below are seed 0
    seed_checkpoint_tables(tiny_student, tmp_path / "adapters")
    kill_when(materialize_args("eval_scores", None, EVALUATION), lambda: saved_generations() >= 4)
    saved = saved_generations()
    recover(instance)

    meta = rerun(instance, "eval_scores", None, EVALUATION)
    total = saved_generations()
    assert 0 < saved < total  # killed mid-pass, with some batches saved
    assert meta["generated_cached"] == saved and meta["generated"] == total - saved  # nothing made twice
    assert meta["models"] == 3
    assert meta["nll_scored"] == 0 and meta["nll_cached"] > 0  # scored before generation began, and saved
    print(f"evaluation: killed with {saved} of {total} generations and {meta['nll_cached']} likelihoods saved; "
          f"the re-run made {meta['generated']} generations and scored nothing again")
