"""The demo's closing note on the teacher, read from materializations in a real Dagster instance."""

from __future__ import annotations

import dagster as dg

from reflection_assets.commands.teacher_note import StageRun, latest_per_teacher, stage_run, teacher_note


def counters(backend: str, mode: str, reflected: int, failed: int, made: int, seconds: float) -> dict:
    return {"backend": backend, "model": "m", "mode": mode, "outcome_reflected": reflected,
            "outcome_parse_failed": failed, "outcome_skipped": 48, "calls_made": made, "calls_cached": 20 - made,
            "elapsed_s": seconds}


def test_stage_run_reads_the_counters() -> None:
    run = stage_run("instruction", counters("openai", "guided", 5, 15, 20, 8.0))
    assert run == StageRun("instruction", "openai", "m", "guided", 20, 5, 20, 0, 8.0)
    assert (run.parse_share, run.rows_per_s) == (0.25, 2.5)
    assert stage_run("instruction", {"rows": 3}) is None  # a materialization without the counters


def test_a_cached_rerun_does_not_hide_the_run_that_made_the_calls() -> None:
    cached = stage_run("response", counters("openai", "guided", 5, 15, 0, 0.1))
    made = stage_run("response", counters("openai", "guided", 5, 15, 20, 9.0))
    other = stage_run("response", counters("transformers", "guided", 7, 13, 20, 60.0))
    assert latest_per_teacher([cached, made, other]) == [made, other]
    assert cached is not None and cached.rows_per_s is None


def test_note_from_the_instance_puts_two_teachers_side_by_side() -> None:
    partitions = dg.StaticPartitionsDefinition(["demo", "other"])
    runs = iter([counters("transformers", "guided", 9, 11, 20, 62.0), counters("openai", "guided", 4, 16, 20, 11.8)])

    @dg.asset(partitions_def=partitions)
    def instruction_reflections() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata=next(runs))

    with dg.instance_for_test() as instance:
        for _ in range(2):
            assert dg.materialize([instruction_reflections], instance=instance, partition_key="demo").success
        lines = teacher_note(instance, "demo")
        assert teacher_note(instance, "other") == []
    rows = [line.split() for line in lines[2:]]
    assert [r[:4] for r in rows] == [["instruction", "openai", "m", "guided"],
                                     ["instruction", "transformers", "m", "guided"]]
    assert rows[0][4:6] == ["4/20", "20%"] and rows[0][-2:] == ["11.8s", "1.69"]
    assert rows[1][4:6] == ["9/20", "45%"] and rows[1][-2:] == ["62.0s", "0.32"]
