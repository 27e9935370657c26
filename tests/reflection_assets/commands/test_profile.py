"""`demo --profile`: step times from a real (ephemeral) instance, model loads charged to their steps."""

from __future__ import annotations

import time

import dagster as dg

from reflection_assets.commands.profile import StepTime, attribute_loads, process_started, profile_lines, run_profile
from reflection_assets.model_store import LOADS, ModelLoad, timed_load


def test_loads_are_charged_to_the_step_they_ran_in() -> None:
    steps = [StepTime("job", "a", 10.0, 20.0), StepTime("job", "b", 20.0, 30.0)]
    loads = [ModelLoad("m", 11.0, 14.0), ModelLoad("m", 21.0, 22.0), ModelLoad("m", 40.0, 41.5)]
    charged, outside = attribute_loads(steps, loads)
    assert [(s.load_s, s.work_s) for s in charged] == [(3.0, 7.0), (1.0, 9.0)]
    assert outside == 1.5


def test_a_profile_of_real_runs_splits_steps_into_loads_and_work() -> None:
    @dg.op
    def loads_a_model() -> int:
        with timed_load("tiny"):
            time.sleep(0.6)
        time.sleep(0.3)
        return 1

    @dg.op
    def works(value: int) -> int:
        time.sleep(0.5)
        return value

    @dg.job
    def two_steps() -> None:
        works(loads_a_model())

    instance = dg.DagsterInstance.ephemeral()
    started = time.time()
    before = len(LOADS)
    result = two_steps.execute_in_process(instance=instance)
    profile = run_profile(instance, [("two_steps", result.run_id)], LOADS[before:], started)
    by_step = {s.step: s for s in profile.steps}
    assert set(by_step) == {"loads_a_model", "works"}
    assert 0.55 <= by_step["loads_a_model"].load_s <= 0.9 and by_step["loads_a_model"].work_s >= 0.25
    assert by_step["works"].load_s == 0 and by_step["works"].seconds >= 0.5
    assert profile.run_overhead_s >= 0 and profile.startup_s >= 0 and profile.total_s >= profile.step_s
    text = "\n".join(profile_lines(profile))
    assert "two_steps loads_a_model" in text and "run overhead" in text and "start-up" in text
    assert process_started() <= time.time()
