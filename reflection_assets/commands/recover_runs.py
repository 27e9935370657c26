"""`reflection-tuning recover-runs`: fail runs whose worker process was killed.

A run whose worker dies without a word (SIGKILL, out of memory) stays STARTED: it keeps its
concurrency-pool slots and, through `in_progress`, blocks automation of its assets. Dagster's
run monitoring fails it only after `max_runtime_seconds` with the default (local) run launcher,
which cannot check its workers. The worker's pid is in the run's own event log, so on the machine
that ran it, a dead worker is certain: this command marks such runs failed, with the reason.
Other launchers (Kubernetes, Celery, Docker) check their workers themselves; nothing is done there.
"""

from __future__ import annotations

import argparse
import os
import sys

HELP = "mark STARTED runs whose local worker process is gone as failed (after a SIGKILL or OOM)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="only list the runs that would be marked failed")


def worker_pid(instance, run_id: str) -> int | None:  # noqa: ANN001 - a DagsterInstance
    """The pid of the process that ran the run: the first engine event that names one."""
    from dagster import DagsterEventType

    for record in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        data = record.dagster_event.engine_event_data if record.dagster_event else None
        pid = data.metadata.get("pid") if data is not None and data.metadata else None
        if pid is not None:
            return int(pid.value)
    return None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def dead_runs(instance) -> list[tuple[object, int]]:  # noqa: ANN001 - a DagsterInstance
    """(run, pid) of each STARTED run whose recorded worker no longer exists on this machine."""
    import dagster as dg

    found = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        pid = worker_pid(instance, run.run_id)
        if pid is not None and not process_alive(pid):
            found.append((run, pid))
    return found


def run(args: argparse.Namespace) -> int:
    if not os.environ.get("DAGSTER_HOME"):
        print("DAGSTER_HOME is not set: export DAGSTER_HOME=$PWD (the instance `make dev` uses)", file=sys.stderr)
        return 2
    import dagster as dg
    from dagster._core.launcher import DefaultRunLauncher

    instance = dg.DagsterInstance.get()
    if not isinstance(instance.run_launcher, DefaultRunLauncher):
        print(f"{type(instance.run_launcher).__name__} checks its own workers (run_monitoring): nothing to do")
        return 0
    dead = dead_runs(instance)
    for dagster_run, pid in dead:
        message = f"run worker (pid {pid}) is gone: killed or out of memory; marked failed by recover-runs"
        print(f"{dagster_run.run_id} {dagster_run.job_name}: {message}")
        if not args.dry_run:
            instance.report_run_failed(dagster_run, message)
    if not dead:
        print("no STARTED run has lost its worker")
    return 0
