"""The driver runs the jobs the definitions declare, and a step naming any other job fails before anything runs."""

import dagster as dg
import pytest

from reflection_assets.commands.driver import Step, UnknownJobError, graph_steps, require_known_jobs, run_steps
from reflection_assets.defs.definitions import defs

DECLARED = [job.name for job in defs.jobs]


def test_every_step_of_the_graph_names_a_declared_job():
    steps = graph_steps("demo", "selective,random", "selective", {"max_new_tokens": 8}, seeds=2)
    require_known_jobs(steps, DECLARED)
    assert {step.job for step in steps} == set(DECLARED)


def test_a_mistyped_job_fails_naming_it_and_the_known_jobs(dagster_instance):
    steps = [Step("selection_job"), Step("evaluaton_job")]
    with pytest.raises(UnknownJobError) as raised:
        run_steps(steps, echo=lambda line: None)
    message = str(raised.value)
    assert message.startswith("no job named evaluaton_job in the definitions; known jobs: ")
    assert all(name in message for name in DECLARED)
    assert dagster_instance.get_runs() == []  # the known step before it did not run either


def test_an_error_raised_while_running_a_step_propagates(dagster_instance):
    bad_config = {"ops": {"selected_dataset": {"config": {"no_such_knob": 1}}}}
    with pytest.raises(dg.DagsterInvalidConfigError):
        run_steps([Step("selection_job", None, bad_config)], echo=lambda line: None)
