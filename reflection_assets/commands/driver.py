"""Run the asset graph job by job on one Dagster instance, printing one line per stage as it finishes.

No CLI command adds a dynamic partition and one run cannot mix partitionings, so the drivers
(`demo`, `experiment`) register the dataset partition, then run the per-dataset job, the selection
job, the per-arm job for each arm and the evaluation job, all recorded in the instance
(`DAGSTER_HOME`) so the web UI shows them.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from reflection_assets.commands.console import StageLine, console_run_config, stage_lines


@dataclass(frozen=True)
class Step:
    job: str
    partition: str | None = None
    run_config: dict | None = None

    @property
    def label(self) -> str:
        return f"{self.job}[{self.partition}]" if self.partition else self.job


@dataclass
class GraphRun:
    ok: bool
    seconds: float
    stages: list[StageLine] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # each run's step label, beside run_ids
    failed: str = ""


def register_dataset(source: str | None, partition: str | None) -> str:
    """The dataset partition key, registered in the instance (and its source in the warehouse)."""
    import dagster as dg

    from reflection_assets.defs.partitions import DATASETS
    from reflection_assets.demo_data import DEMO_PARTITION
    from reflection_assets.ingest.registry import DatasetSource, partition_key_for, register_source
    from reflection_assets.storage import storage_from_env

    key = partition or (partition_key_for(source) if source else DEMO_PARTITION)
    if source:
        register_source(storage_from_env().store(), key, DatasetSource(source))
    dg.DagsterInstance.get().add_dynamic_partitions(DATASETS, [key])
    return key


# On a CPU the arms of a small teacher hold a handful of rows: batches of 2 over 3 epochs give each a
# few optimizer steps after the warmup step (at batch 8 a 6-row arm takes one step an epoch, the first
# at learning rate 0, so its logged loss cannot move).
SMALL_ARM_TRAINING = {"batch_size": 2, "epochs": 3.0}


def register_seeds(count: int) -> list[str]:
    """The seed partitions 0..count-1, registered in the instance (the arm x seed partitions read them)."""
    import dagster as dg

    from reflection_assets.defs.partitions import SEEDS, seed_names

    names = seed_names(count)
    dg.DagsterInstance.get().add_dynamic_partitions(SEEDS, names)
    return names


def arm_steps(
    arms: str, train_arms: str, training: dict | None = None, seeds: int = 1, arm: dict | None = None
) -> list[Step]:
    """One arms_job run per arm and seed: the arms in `train_arms` build their rows and train with each of
    `seeds` seeds; the others build their rows once (seed 0) and skip training, said so.

    `training` sets other lora_checkpoint knobs for the trained arms (the demo's small batches); `arm` is
    arm_datasets' run config (an experiment's evaluation file).
    """
    from reflection_assets.defs.partitions import arm_key, seed_names

    trained = {a.strip() for a in train_arms.split(",") if a.strip()}
    steps = []
    for name in (a.strip() for a in arms.split(",")):
        if not name:
            continue
        for seed in seed_names(seeds) if name in trained else seed_names(1):
            ops = {"lora_checkpoint": {"config": {"enabled": name in trained, **(training or {})}}}
            if arm:
                ops["arm_datasets"] = {"config": arm}
            steps.append(Step("arms_job", str(arm_key(name, seed)), {"ops": ops}))
    return steps


def graph_steps(
    dataset: str,
    arms: str,
    train_arms: str,
    teacher_stage: dict,
    seeds: int = 1,
    selection: dict | None = None,
    evaluation: dict | None = None,
    ingest: dict | None = None,
    training: dict | None = None,
    arm: dict | None = None,
) -> list[Step]:
    """The whole graph in order: one dataset partition (both teacher stages with `teacher_stage` as
    their run config), the selection, every arm in `arms` (training those in `train_arms` with `seeds`
    seeds each; the seeds must be registered, `register_seeds`), evaluation. `selection`, `evaluation`
    `ingest` and `arm` are the run configs of selected_dataset, eval_scores, raw_instructions and arm_datasets
    (an experiment scopes them); `training` the trained arms' lora_checkpoint knobs (default SMALL_ARM_TRAINING)."""
    stages = {"ops": {name: {"config": teacher_stage} for name in ("instruction_reflections", "response_reflections")}}
    if ingest:
        stages["ops"]["raw_instructions"] = {"config": ingest}
    return [
        Step("dataset_job", dataset, stages),
        Step("selection_job", None, {"ops": {"selected_dataset": {"config": selection}}} if selection else None),
        *arm_steps(arms, train_arms, SMALL_ARM_TRAINING if training is None else training, seeds, arm),
        Step("evaluation_job", None, {"ops": {"eval_scores": {"config": evaluation}}} if evaluation else None),
    ]


def failure_message(result: Any) -> str:
    """The first failed step and the first line of its error, for the console."""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data is not None:
            error = event.step_failure_data.error
            while error is not None and error.cause is not None:  # the user code's error, not Dagster's wrapper
                error = error.cause
            message = (error.message if error else "").strip().splitlines()
            return f"{event.step_key}: {message[0] if message else 'failed'}"
    return "failed"


class StageWatcher:
    """Prints each stage's line as its step finishes, by polling the run's events from a thread.

    A job runs several steps (the dataset job: ingest, two teacher stages, three scoring assets), so
    waiting for the whole job would leave the terminal silent for minutes.
    """

    def __init__(self, instance: Any, run_id: str, echo: Callable[[str], None], every_s: float = 2.0) -> None:
        self.instance, self.run_id, self.echo, self.every_s = instance, run_id, echo, every_s
        self.printed: list[StageLine] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> StageWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.flush()  # whatever finished since the last poll

    def _poll(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.flush(finished_only=True)
            except Exception:  # noqa: BLE001 - a read racing the run's own writes is retried on the next poll
                continue

    def flush(self, finished_only: bool = False) -> None:
        shown = {(line.asset, line.partition) for line in self.printed}
        for line in stage_lines(self.instance, self.run_id, finished_only):
            if (line.asset, line.partition) not in shown:
                self.echo(line.render())
                self.printed.append(line)


class UnknownJobError(ValueError):
    """A step names a job the definitions do not declare (a typo in the driver's steps)."""


def require_known_jobs(steps: list[Step], jobs: Iterable[str]) -> None:
    """Raise before anything runs when a step names a job not among `jobs`, listing the known ones."""
    known = sorted(jobs)
    unknown = sorted({step.job for step in steps} - set(known))
    if unknown:
        raise UnknownJobError(f"no job named {', '.join(unknown)} in the definitions; known jobs: {', '.join(known)}")


def run_steps(steps: list[Step], verbose: bool = False, echo: Callable[[str], None] = print) -> GraphRun:
    """Execute each job in order, a line per stage as it finishes; stop at the first failure and say
    where to read its logs. A step naming an unknown job raises `UnknownJobError` before any runs."""
    import dagster as dg
    from dagster._core.utils import make_new_run_id

    from reflection_assets.defs.definitions import defs
    from reflection_assets.defs.jobs import run_asset_selection

    require_known_jobs(steps, (job.name for job in defs.jobs))
    instance = dg.DagsterInstance.get()
    started = time.monotonic()
    run = GraphRun(ok=True, seconds=0.0)
    for step in steps:
        job = defs.resolve_job_def(step.job)
        run_id = make_new_run_id()
        with StageWatcher(instance, run_id, echo) as watcher:
            result = job.execute_in_process(
                instance=instance,
                partition_key=step.partition,
                asset_selection=run_asset_selection(job),
                run_config=console_run_config(step.run_config, verbose),
                raise_on_error=False,
                run_id=run_id,
            )
        run.run_ids.append(result.run_id)
        run.labels.append(step.label)
        run.stages += watcher.printed
        if not result.success:
            run.ok, run.failed = False, f"{step.label}: {failure_message(result)}"
            echo(f"{step.label} failed (run {result.run_id}): {failure_message(result)}")
            echo("  the run's full log is in the web UI: make dev -> Runs")
            break
    run.seconds = time.monotonic() - started
    return run


def require_dagster_home() -> bool:
    if os.environ.get("DAGSTER_HOME"):
        return True
    print("DAGSTER_HOME is not set: run `make demo`, or export DAGSTER_HOME=$PWD", file=sys.stderr)
    return False
