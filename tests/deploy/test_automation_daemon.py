"""New data flows through the whole graph on its own under `dagster dev`: a file dropped in the
inbox becomes a partition and a run (inbox sensor), and the automation sensor then requests the
selection, the arms, training, evaluation and the report, tick by tick, with no hand-launched job.

The real daemon, run launcher and instance (the repo's dagster.yaml, the `gpu`/`teacher` pools at
one slot as `make concurrency` sets them), the teacher an OpenAI-compatible server on 127.0.0.1,
the student a tiny model; every run keeps its default config, as automation launches it.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.partitions.context import partition_loading_context

from reflection_assets.defs.automation import SENSOR_INTERVAL_ENV
from reflection_assets.defs.deployment import ENV_EXECUTOR
from reflection_assets.selection.columns import ARMS
from support.dagster_dev import start_dagster_dev, stop_session
from support.fault_server import FaultServer

REPO = Path(__file__).resolve().parents[2]
ROWS = 8
FINAL = dg.AssetKey("ablation_report")

pytestmark = pytest.mark.slow  # nine runs through the daemon, each step its own process


def dataset_rows() -> list[dict]:
    topics = ["light", "plants", "water", "energy", "sugar", "leaves", "roots", "air"]
    return [{"instruction": f"ROW=d{i} Explain {t}.", "output": f"Plants use {t}. [End] {i}"}
            for i, t in enumerate(topics[:ROWS])]


def dagster_cli(*args: str, env: dict) -> None:
    subprocess.run([str(Path(sys.executable).parent / "dagster"), *args], cwd=REPO, env=env, check=True,
                   timeout=120, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def materializations(instance: dg.DagsterInstance, key: dg.AssetKey) -> int:
    return len(instance.fetch_materializations(key, limit=100).records)


IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED]


def wait_for(instance: dg.DagsterInstance, seconds: float) -> None:
    """Until the report is materialized and its run has ended; fails at once on a failed run, with its error."""
    deadline = time.monotonic() + seconds
    while materializations(instance, FINAL) == 0 or instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT)):
        failed = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
        assert not failed, [(r.job_name, r.tags, failure_text(instance, r.run_id)) for r in failed]
        assert time.monotonic() < deadline, f"no report after {seconds:.0f}s: {run_summary(instance)}"
        time.sleep(2)


def failure_text(instance: dg.DagsterInstance, run_id: str) -> str:
    errors = [r.dagster_event.event_specific_data.error.message
              for r in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)]
    return "; ".join(errors)[-2000:]


def trained_partitions(instance: dg.DagsterInstance) -> list[str]:
    """The arm partition of every `lora_checkpoint` materialization that trained an adapter (rather than reused
    or skipped)."""
    records = instance.fetch_materializations(dg.AssetKey("lora_checkpoint"), limit=100).records
    return sorted(str(r.asset_materialization.partition) for r in records
                  if r.asset_materialization.metadata["status"].value == "trained")


def step_spans(instance: dg.DagsterInstance, step: str) -> list[tuple[float, float]]:
    """(start, end) of every execution of `step`, across runs."""
    spans = []
    for run in instance.get_runs():
        times = {r.dagster_event.event_type: r.timestamp for r in instance.all_logs(run.run_id)
                 if r.dagster_event and r.dagster_event.step_key == step
                 and r.dagster_event.event_type in (dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS)}
        if len(times) == 2:
            spans.append((times[dg.DagsterEventType.STEP_START], times[dg.DagsterEventType.STEP_SUCCESS]))
    return sorted(spans)


def why_requested(instance: dg.DagsterInstance, key: dg.AssetKey) -> list[str]:
    """Each automation tick that requested `key`: when, and every clause of its condition that held.

    What a failed one-selection assert needs to tell which input update started the second request.
    """

    def held(node, depth: int = 0) -> list[str]:
        size = node.true_subset.size
        line = f"{'  ' * depth}{node.condition_snapshot.label or node.condition_snapshot.class_name}: {size}"
        return [line, *(row for child in node.child_evaluations for row in held(child, depth + 1))]

    lines = []
    # Partitioned subsets are sized against the instance's dynamic partitions.
    with partition_loading_context(datetime.datetime.now(datetime.timezone.utc), instance):
        for record in instance.schedule_storage.get_auto_materialize_asset_evaluations(key, limit=50):
            evaluation = record.get_evaluation_with_run_ids().evaluation
            if evaluation.true_subset.size:
                lines += [f"tick {record.evaluation_id} at {record.timestamp:.3f}", *held(evaluation)]
    return lines


def run_summary(instance: dg.DagsterInstance) -> list[tuple]:
    return [(r.job_name, r.status.value, sorted(k.to_user_string() for k in r.asset_selection or []),
             r.tags.get("dagster/partition", "")) for r in instance.get_runs()]


def test_a_file_in_the_inbox_flows_to_the_report_without_a_launched_job(tmp_path, tiny_base):
    home, data, inbox = tmp_path / "home", tmp_path / "data", tmp_path / "inbox"
    for folder in (home, inbox):
        folder.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    with FaultServer() as teacher:
        env = {**os.environ, "DAGSTER_HOME": str(home), "REFLECTION_DATA_DIR": str(data),
               "REFLECTION_INBOX": str(inbox), "REFLECTION_TEACHER_BASE_URL": teacher.url,
               "REFLECTION_TEACHER_MODEL": "fault-model", "REFLECTION_STUDENT": tiny_base, "OMP_NUM_THREADS": "1",
               # The sensors at the daemon's own 5-second loop rather than 30 s: the same flow in fewer idle ticks.
               # More ticks mean more chances for a tick to land mid-run; the one-selection assert below holds
               # because every run names its assets (test_automation's test on jobs.run_asset_selection).
               SENSOR_INTERVAL_ENV: "5",
               # Every step in its run's process: this test is about sensors, automation and pools, not step
               # isolation (test_parallel_partitions and test_killed_runs keep the multiprocess executor).
               ENV_EXECUTOR: "in_process"}
        dagster_cli("instance", "concurrency", "set", "gpu", "1", env=env)
        dagster_cli("instance", "concurrency", "set", "teacher", "1", env=env)
        server, _ = start_dagster_dev(env)
        try:
            dagster_cli("sensor", "start", "inbox_sensor", "-w", "workspace.yaml", env=env)  # off by default
            staged = tmp_path / "new.jsonl"
            staged.write_text("".join(json.dumps(row) + "\n" for row in dataset_rows()))
            staged.rename(inbox / "new.jsonl")  # arrives whole, as a finished upload

            with dg.DagsterInstance.from_config(str(home)) as instance:
                wait_for(instance, 900)
                runs = instance.get_runs()
                summary = run_summary(instance)
                selection_ticks = "\n".join(why_requested(instance, dg.AssetKey("selected_dataset")))
                training_ticks = "\n".join(why_requested(instance, dg.AssetKey("lora_checkpoint")))
                selections = materializations(instance, dg.AssetKey("selected_dataset"))
                evaluations = materializations(instance, dg.AssetKey("eval_scores"))
                partitions = instance.get_dynamic_partitions("datasets")
                training = step_spans(instance, "lora_checkpoint")
                trained = trained_partitions(instance)
        finally:
            stop_session(server)

    assert partitions == ["new"]
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), summary
    launched_by = {r.tags.get("dagster/sensor_name") for r in runs}
    assert launched_by == {"inbox_sensor", "automation_sensor"}, summary  # nobody launched a job by hand
    # One selection for the new partition, not one per step.
    assert selections == 1 and evaluations == 1, f"{summary}\n{selection_ticks}"
    assert teacher.request_count >= 2 * ROWS  # both teacher stages ran, over HTTP
    # Six arm runs (every arm, seed 0: the inbox sensor registers it) may run at once (max_concurrent_runs
    # 4), but the `gpu` pool's one slot lets one training step run at a time.
    # Each arm trained once: nothing is paid for twice. Known and left open: a tick may request one arm's step
    # again right after the arms' runs start (seen 2 times in ~8 runs; the dump below names its clauses), which
    # reuses the finished checkpoint in seconds; more than that one is a failure.
    assert len(trained) == len(set(trained)), f"{trained}\n{summary}\n{training_ticks}"
    assert len(ARMS) <= len(training) <= len(ARMS) + 1, f"{training}\n{summary}\n{training_ticks}"
    if len(training) > len(ARMS):
        print(f"one arm's checkpoint step ran twice (reused):\n{summary}\n{training_ticks}")
    assert all(end <= start for (_, end), (start, _) in zip(training, training[1:])), training
    print(f"{len(runs)} runs: {summary}")
