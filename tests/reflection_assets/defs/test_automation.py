"""The automation conditions of the real code location, tick by tick (requests, not launches).

Materializations are reported to a real test instance as runless events; each tick is one
`evaluate_automation_conditions` call carrying the previous tick's cursor, as the daemon does.
"""

import dagster as dg
import pytest

from reflection_assets.defs.automation import (
    CONDITIONS,
    EVAL_CRON_ENV,
    SENSOR_INTERVAL_ENV,
    automation_sensor,
    evaluation_schedule,
    sensor_interval_seconds,
)
from reflection_assets.defs.definitions import defs
from reflection_assets.defs.jobs import run_asset_selection
from reflection_assets.defs.partitions import ARMS, DATASETS, FIRST_SEED, SEEDS, arm_key

ARM_SEED_0 = {str(arm_key(arm)) for arm in ARMS}  # automation trains each arm once, seed 0

PER_DATASET = [
    "instruction_reflections", "raw_ifd_scores", "instruction_ifd_scores", "response_reflections", "response_scores",
]


class Ticks:
    """Consecutive automation ticks against one instance."""

    def __init__(self, instance: dg.DagsterInstance, definitions: dg.Definitions = defs):
        self.instance, self.defs, self.cursor = instance, definitions, None

    def tick(self) -> dict[str, set]:
        result = dg.evaluate_automation_conditions(defs=self.defs, instance=self.instance, cursor=self.cursor)
        self.cursor = result.cursor
        return {
            key.to_user_string(): result.get_requested_partitions(key)
            for key in self.defs.resolve_asset_graph().get_all_asset_keys()
            if result.get_num_requested(key)
        }

    def materialize(self, asset: str, partition: str | None = None) -> None:
        self.instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=asset, partition=partition))


def ingest(ticks: Ticks, partition: str) -> None:
    """What the inbox sensor's run leaves behind: the ingest tables of one partition."""
    ticks.materialize("raw_instructions", partition)
    ticks.materialize("rejected_rows", partition)


def score_whole_partition(ticks: Ticks, partition: str) -> None:
    for asset in PER_DATASET:
        ticks.materialize(asset, partition)


def selected(instance: dg.DagsterInstance, partition: str) -> Ticks:
    """Ticks on an instance where `partition` was ingested, scored and selected from (its arms not yet built)."""
    instance.add_dynamic_partitions(SEEDS, [FIRST_SEED])  # the inbox sensor registers it
    instance.add_dynamic_partitions(DATASETS, [partition])
    ticks = Ticks(instance)
    ticks.tick()
    ingest(ticks, partition)
    score_whole_partition(ticks, partition)
    ticks.materialize("selected_dataset")
    return ticks


def start_dataset_run(instance: dg.DagsterInstance, partition: str, asset_selection) -> dg.DagsterRun:
    run = instance.create_run_for_job(job_def=defs.resolve_job_def("dataset_job"),
                                      tags={"dagster/partition": partition}, asset_selection=asset_selection)
    instance.report_dagster_event(dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name=run.job_name),
                                  run.run_id)
    return run


def materialize_in_run(instance: dg.DagsterInstance, run: dg.DagsterRun, asset: str, partition: str) -> None:
    data = dg._core.events.StepMaterializationData(dg.AssetMaterialization(asset_key=asset, partition=partition))
    instance.report_dagster_event(dg.DagsterEvent(dg.DagsterEventType.ASSET_MATERIALIZATION.value,
                                                  job_name=run.job_name, event_specific_data=data), run.run_id)


def end_run(instance: dg.DagsterInstance, run: dg.DagsterRun, event: dg.DagsterEventType) -> None:
    instance.report_dagster_event(dg.DagsterEvent(event.value, job_name=run.job_name), run.run_id)


def test_a_new_partition_flows_stage_by_stage_into_one_selection(dagster_instance):
    dagster_instance.add_dynamic_partitions(SEEDS, [FIRST_SEED])  # the inbox sensor registers it
    dagster_instance.add_dynamic_partitions(DATASETS, ["alpaca"])
    ticks = Ticks(dagster_instance)
    assert ticks.tick() == {}  # nothing materialized: nothing to do (and no selection from nothing)

    ingest(ticks, "alpaca")
    # One run for the new partition's whole chain (the sensor owns the root); no selection yet.
    assert ticks.tick() == {asset: {"alpaca"} for asset in PER_DATASET}
    assert ticks.tick() == {}  # requested once, not again while it runs
    score_whole_partition(ticks, "alpaca")
    assert ticks.tick() == {"selected_dataset": {None}}

    # The arms wait for the new selection, not for the per-dataset tables they also read.
    ticks.materialize("selected_dataset")
    # Each arm's rows and its adapter in one request (training follows its own arm's rows).
    assert ticks.tick() == {"arm_datasets": ARM_SEED_0, "lora_checkpoint": ARM_SEED_0}
    assert ticks.tick() == {}


def test_two_finished_partitions_make_one_selection_not_two(dagster_instance):
    dagster_instance.add_dynamic_partitions(SEEDS, [FIRST_SEED])  # the inbox sensor registers it
    dagster_instance.add_dynamic_partitions(DATASETS, ["first", "second"])
    ticks = Ticks(dagster_instance)
    ticks.tick()
    for partition in ("first", "second"):
        ingest(ticks, partition)
        score_whole_partition(ticks, partition)
    requested = ticks.tick()
    assert requested == {"selected_dataset": {None}}
    ticks.materialize("selected_dataset")
    assert ticks.tick() == {"arm_datasets": ARM_SEED_0, "lora_checkpoint": ARM_SEED_0}  # one selection, one round


def test_a_second_dataset_waits_for_its_own_chain_before_the_next_selection(dagster_instance):
    ticks = selected(dagster_instance, "first")
    ticks.tick()
    dagster_instance.add_dynamic_partitions(SEEDS, [FIRST_SEED])  # the inbox sensor registers it
    dagster_instance.add_dynamic_partitions(DATASETS, ["second"])
    ingest(ticks, "second")
    # The chain of `second` is requested; selecting now would read the tables without it.
    assert ticks.tick() == {asset: {"second"} for asset in PER_DATASET}
    score_whole_partition(ticks, "second")
    assert ticks.tick() == {"selected_dataset": {None}}


def test_no_selection_while_a_partition_run_is_in_flight(dagster_instance):
    """`first` is done and never selected, but `second`'s run is going: wait for it, then select once."""
    dagster_instance.add_dynamic_partitions(SEEDS, [FIRST_SEED])  # the inbox sensor registers it
    dagster_instance.add_dynamic_partitions(DATASETS, ["first", "second"])
    ticks = Ticks(dagster_instance)
    ticks.tick()
    ingest(ticks, "first")
    score_whole_partition(ticks, "first")
    ingest(ticks, "second")
    # What automation launches after the inbox run: the partition's chain.
    start_dataset_run(dagster_instance, "second", frozenset(dg.AssetKey(asset) for asset in PER_DATASET))
    assert ticks.tick() == {}  # neither a duplicate of the chain nor a selection without `second`
    score_whole_partition(ticks, "second")
    assert ticks.tick() == {"selected_dataset": {None}}


def start_arm_run(instance: dg.DagsterInstance, partition: dg.MultiPartitionKey, assets: list[str]) -> dg.DagsterRun:
    job = defs.resolve_job_def("arms_job")
    tags = {"dagster/partition": str(partition),
            **{f"dagster/partition/{dimension}": key for dimension, key in partition.keys_by_dimension.items()}}
    run = instance.create_run_for_job(job_def=job, tags=tags,
                                      asset_selection=frozenset(dg.AssetKey(asset) for asset in assets))
    instance.report_dagster_event(dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name=run.job_name),
                                  run.run_id)
    return run


def test_no_evaluation_while_an_arm_is_still_building_its_rows(dagster_instance):
    """Seen under the daemon: one arm's rows built in a run of their own, its training not yet requested
    (its input in flight), every other arm trained: evaluating then would score five arms, and again later.
    The fan-in waits for its inputs' inputs too."""
    ticks = selected(dagster_instance, "alpaca")
    assert ticks.tick() == {"arm_datasets": ARM_SEED_0, "lora_checkpoint": ARM_SEED_0}
    late, *done = [arm_key(arm) for arm in ARMS]
    for partition in done:
        ticks.materialize("arm_datasets", partition)
        ticks.materialize("lora_checkpoint", partition)
    run = start_arm_run(dagster_instance, late, ["arm_datasets"])
    assert "eval_scores" not in ticks.tick()  # `late`'s rows are being built; its training comes next
    materialize_in_run(dagster_instance, run, "arm_datasets", late)
    end_run(dagster_instance, run, dg.DagsterEventType.RUN_SUCCESS)
    assert ticks.tick() == {"lora_checkpoint": {str(late)}}  # its training, and still no evaluation
    ticks.materialize("lora_checkpoint", late)
    assert ticks.tick() == {"eval_scores": {None}, "ablation_report": {None}}  # all six arms, once


@pytest.mark.parametrize("names_its_assets", [True, False])
def test_a_run_that_names_its_assets_is_not_news_for_its_own_later_steps(dagster_instance, names_its_assets):
    """The inbox run writes the inputs of its own later steps; automation must not take them for news.

    Seen under the daemon (one run in nine at 5 s ticks): a tick that read `response_reflections` as no longer
    in progress but not yet updated requested it again, and a second selection and evaluation followed.
    Dagster discounts an input's update made by a run that also selected the asset, reading
    `run.asset_selection`, so every run the project launches names its assets. Observable without the timing:
    the run fails after `instruction_ifd_scores`, and only a run left at None gets its next steps re-requested.
    """
    dagster_instance.add_dynamic_partitions(SEEDS, [FIRST_SEED])
    dagster_instance.add_dynamic_partitions(DATASETS, ["inbox"])
    ticks = Ticks(dagster_instance)
    ticks.tick()
    selection = frozenset(run_asset_selection(defs.resolve_job_def("dataset_job"))) if names_its_assets else None
    run = start_dataset_run(dagster_instance, "inbox", selection)
    for asset in ("raw_instructions", "rejected_rows", *PER_DATASET[:3]):
        materialize_in_run(dagster_instance, run, asset, "inbox")
    assert ticks.tick() == {}  # in flight
    end_run(dagster_instance, run, dg.DagsterEventType.RUN_FAILURE)
    expected = {} if names_its_assets else {"response_reflections": {"inbox"}, "response_scores": {"inbox"}}
    assert ticks.tick() == expected


def test_a_partition_that_never_materialized_does_not_block_the_rest(dagster_instance):
    # `broken` was registered (say its file failed to parse) and never produced a table.
    dagster_instance.add_dynamic_partitions(SEEDS, [FIRST_SEED])  # the inbox sensor registers it
    dagster_instance.add_dynamic_partitions(DATASETS, ["good", "broken"])
    ticks = Ticks(dagster_instance)
    ticks.tick()
    ingest(ticks, "good")
    score_whole_partition(ticks, "good")
    assert ticks.tick() == {"selected_dataset": {None}}


def test_plain_eager_would_block_the_fan_in_on_that_partition(dagster_instance):
    """The reason `fan_in` drops `~any_deps_missing()`: the same history under plain eager()."""
    eager = dg.map_asset_specs(
        lambda spec: spec.replace_attributes(automation_condition=dg.AutomationCondition.eager())
        if spec.key.to_user_string() == "selected_dataset" else spec,
        list(defs.resolve_asset_graph().assets_defs),
    )
    dagster_instance.add_dynamic_partitions(SEEDS, [FIRST_SEED])  # the inbox sensor registers it
    dagster_instance.add_dynamic_partitions(DATASETS, ["good", "broken"])
    ticks = Ticks(dagster_instance, dg.Definitions(assets=eager))
    ticks.tick()
    ingest(ticks, "good")
    score_whole_partition(ticks, "good")
    assert "selected_dataset" not in ticks.tick()


def test_the_automation_sensor_is_declared_running_and_launches_runs_not_backfills():
    sensor = defs.resolve_sensor_def(automation_sensor.name)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.emit_backfills is False  # a backfill would wait up to 30 s for the backfill daemon, twice


def test_both_sensors_tick_every_30_seconds_unless_the_deployment_says_otherwise(monkeypatch):
    monkeypatch.delenv(SENSOR_INTERVAL_ENV, raising=False)
    assert sensor_interval_seconds() == 30
    sensors = [defs.resolve_sensor_def(name) for name in ("inbox_sensor", "automation_sensor")]
    assert [sensor.minimum_interval_seconds for sensor in sensors] == [30, 30]
    monkeypatch.setenv(SENSOR_INTERVAL_ENV, "5")
    assert sensor_interval_seconds() == 5
    for bad in ("soon", "0"):
        monkeypatch.setenv(SENSOR_INTERVAL_ENV, bad)
        with pytest.raises(ValueError, match=SENSOR_INTERVAL_ENV):
            sensor_interval_seconds()


def test_evaluation_schedule_is_off_unless_a_cron_is_given(monkeypatch):
    monkeypatch.delenv(EVAL_CRON_ENV, raising=False)
    stopped = evaluation_schedule()
    assert stopped.default_status == dg.DefaultScheduleStatus.STOPPED

    monkeypatch.setenv(EVAL_CRON_ENV, "15 4 * * 1")
    running = evaluation_schedule()
    assert running.default_status == dg.DefaultScheduleStatus.RUNNING
    assert running.cron_schedule == "15 4 * * 1"
    (request,) = running.evaluate_tick(dg.build_schedule_context()).run_requests
    assert request.asset_selection == [dg.AssetKey(name) for name in ("eval_scores", "ablation_report")]
    job = dg.Definitions(assets=defs.resolve_asset_graph().assets_defs, schedules=[running]).resolve_job_def(
        running.job_name
    )
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {"eval_scores", "ablation_report"}


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_every_named_asset_exists(name):
    assert name in {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
