"""A run whose worker is SIGKILLed stays STARTED; `recover-runs` marks it failed, with the reason."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from reflection_assets.cli import main

REPO = Path(__file__).resolve().parents[3]

# A run that takes a while, executed by its own process against the instance in DAGSTER_HOME.
LONG_RUN = textwrap.dedent(
    """
    import time
    import dagster as dg

    @dg.asset
    def slow_table() -> int:
        time.sleep(120)
        return 1

    dg.materialize([slow_table], instance=dg.DagsterInstance.get())
    """
)


@pytest.fixture
def home(tmp_path, monkeypatch):
    folder = tmp_path / "home"
    folder.mkdir()
    (folder / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(folder))
    return folder


def started_runs(instance):
    return instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))


def test_killed_run_is_marked_failed_and_a_live_one_is_left_alone(home, capsys):
    # The instance's SQLite stores are created (and stamped with their schema revision) before the worker
    # starts: two processes creating a fresh home at once can both stamp it, and every later open fails
    # with "more than one head" (seen in CI). Real homes are made once, by `dagster dev` or the first command.
    instance = dg.DagsterInstance.get()
    worker = subprocess.Popen([sys.executable, "-c", LONG_RUN], cwd=REPO, env=dict(os.environ),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not started_runs(instance) and time.monotonic() < deadline:
        assert worker.poll() is None, worker.stderr.read()[-2000:]
        time.sleep(0.5)
    (run,) = started_runs(instance)

    assert main(["recover-runs"]) == 0  # the worker is alive: nothing to do
    assert "no STARTED run has lost its worker" in capsys.readouterr().out
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED

    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED  # what the kill leaves

    assert main(["recover-runs", "--dry-run"]) == 0
    assert f"pid {worker.pid}" in capsys.readouterr().out
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
    assert main(["recover-runs"]) == 0
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    assert started_runs(instance) == []
