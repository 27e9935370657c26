"""Declarative automation: when each asset re-materializes on its own, and the evaluation schedule.

This module owns every `AutomationCondition` of the graph; `definitions.py` applies them by asset
name (`with_automation`), so asset modules stay free of scheduling policy. A new dataset partition (added by the
inbox sensor, which runs `raw_instructions`) flows through reflection and scoring partition by
partition, then into ONE selection per tick that has no partition in flight, then the arms,
training, evaluation and the report. The choices follow dagster 1.13's behaviour:

- `eager()` requires every dependency partition to exist (`~any_deps_missing()`): a registered
  dataset partition that never materialized would block the fan-in for good. The fan-in assets
  drop that clause and instead require at least one materialized partition of each input.
- `arm_datasets` also reads the per-dataset tables; under plain `eager()` it would run in the same
  tick as the selection, on the stale selection. It reacts to `selected_dataset` only.
- `raw_instructions` has no condition: the inbox sensor already launches its run, and `eager()`
  on the root would request the same partition a second time.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import dagster as dg

EVAL_CRON_ENV = "REFLECTION_EVAL_CRON"  # e.g. "0 3 * * *"; unset: the schedule exists but is stopped
DEFAULT_EVAL_CRON = "0 3 * * *"
# How often the inbox and automation sensors tick. 30 s suits a deployment (each tick queries the instance);
# tests and a small local setup lower it, down to the daemon's own 5-second sensor loop.
SENSOR_INTERVAL_ENV = "REFLECTION_SENSOR_INTERVAL_S"
DEFAULT_SENSOR_INTERVAL_S = 30
EVALUATION_ASSETS = ("eval_scores", "ablation_report")

Condition = dg.AutomationCondition


def sensor_interval_seconds() -> int:
    """The sensors' minimum interval: REFLECTION_SENSOR_INTERVAL_S, else 30 s; read when the code location loads."""
    raw = os.environ.get(SENSOR_INTERVAL_ENV, "").strip()
    if not raw:
        return DEFAULT_SENSOR_INTERVAL_S
    try:
        seconds = int(raw)
    except ValueError:
        raise ValueError(f"{SENSOR_INTERVAL_ENV}={raw!r}: expected a whole number of seconds") from None
    if seconds < 1:
        raise ValueError(f"{SENSOR_INTERVAL_ENV}={raw!r}: expected at least 1 second")
    return seconds


def per_partition() -> Condition:
    """Re-run a partition when one of its inputs updated (the same partition, or a static one)."""
    return Condition.eager()


def fan_in() -> Condition:
    """Re-run an aggregate when any input partition updated, once nothing upstream is in flight.

    A never-materialized input partition does not block; but at least one partition of each
    input must exist, so a fresh instance does not select from nothing. An input about to run makes it
    wait for that run too (`eager()` would count it as an update and run in parallel, from stale tables):
    one requested in this very tick, or one whose own inputs are in a run, or updated this tick while it did not.
    `will_be_requested()` alone misses the last two across partitionings: it only counts an input that could
    share the aggregate's run, so an arm whose rows had just been built would not hold back evaluation.
    """
    updated = Condition.any_deps_match(Condition.newly_updated()).with_label("an input updated")
    about_to_run = (
        Condition.will_be_requested()
        | Condition.any_deps_in_progress()
        | (Condition.any_deps_match(Condition.newly_updated()) & ~Condition.newly_updated())
    )
    return (
        Condition.eager().without(~Condition.any_deps_missing()).replace("any_deps_updated", updated)
        & ~Condition.any_deps_match(about_to_run).with_label("an input about to run")
        & Condition.all_deps_match(~Condition.missing()).with_label("each input has data")
    ).with_label("fan_in")


def after_selection() -> Condition:
    """Like `fan_in`, but only a new selection (not a per-dataset update) starts it."""
    selection_updated = Condition.any_deps_match(Condition.newly_updated()).allow(
        dg.AssetSelection.assets("selected_dataset")
    )
    return fan_in().replace("an input updated", selection_updated.with_label("selected_dataset updated")).with_label(
        "after_selection"
    )


# Asset name -> condition; every name is an asset of the graph (a test checks it).
CONDITIONS: dict[str, Condition] = {
    "instruction_reflections": per_partition(),
    "raw_ifd_scores": per_partition(),
    "instruction_ifd_scores": per_partition(),
    "response_reflections": per_partition(),
    "response_scores": per_partition(),
    "selected_dataset": fan_in(),
    "arm_datasets": after_selection(),
    "lora_checkpoint": per_partition(),
    "eval_scores": fan_in(),
    "ablation_report": per_partition(),
}


def with_automation(assets: Iterable[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """`assets` with each asset's condition from CONDITIONS (assets not named keep theirs)."""

    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        condition = CONDITIONS.get(spec.key.to_user_string())
        return spec if condition is None else spec.replace_attributes(automation_condition=condition)

    return dg.map_asset_specs(apply, list(assets))


# Declared RUNNING: on a fresh instance Dagster's default automation sensor is stopped, and a
# new dataset would then wait for someone to switch it on. It needs the daemon (`dagster dev`).
# Runs, not backfills: a tick that requests several arm partitions launches one run per partition at once.
# As a backfill the same request waits for the backfill daemon, which wakes every 30 s (a fixed interval in
# dagster 1.13), to launch the runs, and again to mark the backfill done before evaluation may start.
automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    emit_backfills=False,
    minimum_interval_seconds=sensor_interval_seconds(),
    description="Evaluates the assets' automation conditions (reflection_assets/defs/automation.py).",
)


def evaluation_schedule() -> dg.ScheduleDefinition:
    """A schedule re-running evaluation and the report.

    Off by default: it runs only when `REFLECTION_EVAL_CRON` gives its cron (it can also be
    switched on in the UI, on the default cron).
    """
    cron = os.environ.get(EVAL_CRON_ENV, "").strip()
    assets = [dg.AssetKey(name) for name in EVALUATION_ASSETS]
    return dg.ScheduleDefinition(
        name="evaluation_schedule",
        cron_schedule=cron or DEFAULT_EVAL_CRON,
        target=dg.AssetSelection.assets(*assets),
        # The run names its assets (see jobs.run_asset_selection): the report is then not re-requested by
        # automation for the scores this very run writes.
        execution_fn=lambda context: dg.RunRequest(asset_selection=assets),
        default_status=dg.DefaultScheduleStatus.RUNNING if cron else dg.DefaultScheduleStatus.STOPPED,
        description=f"Re-evaluates every arm and rebuilds the report (cron from ${EVAL_CRON_ENV}).",
    )
