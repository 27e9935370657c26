"""What a run pays to start its steps: Dagster's default `spawn` vs the project's forkserver (deployment.py).

Each step of a multiprocess run is its own process. Under `spawn` (Dagster's default) every one starts a fresh
interpreter and imports Dagster and the code location again; under the project's executor every one forks from
a server that imported them once (`STEP_PROCESS_START`). This runs one job of N steps that do nothing but what a
project step does before its work (import the code location), under both start methods, alternating, in one
process, on a temporary instance, and prints the wall time of each run and the ratio of the medians.

    python benchmarks/step_start.py --steps 6 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reflection_assets.defs.deployment import STEP_PROCESS_START  # noqa: E402

STEPS = 6  # the per-dataset stages of the graph


@dg.op
def project_step() -> None:
    import reflection_assets.defs.definitions  # noqa: F401 - what every step process of the project imports first


@dg.job
def steps_job() -> None:
    for i in range(STEPS):
        project_step.alias(f"step_{i}")()


def run_once(instance: dg.DagsterInstance, start_method: dict) -> float:
    config = {
        "execution": {"config": {"multiprocess": {"start_method": start_method, "max_concurrent": 1}}},
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},  # the events stay in the instance
    }
    started = time.perf_counter()
    with dg.execute_job(dg.reconstructable(steps_job), instance, run_config=config) as result:
        assert result.success
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each start method, alternating")
    args = parser.parse_args(argv)
    methods = {"spawn (Dagster's default)": {"spawn": {}}, "forkserver, code location preloaded": STEP_PROCESS_START}
    times: dict[str, list[float]] = {name: [] for name in methods}
    with tempfile.TemporaryDirectory() as home, dg.DagsterInstance.local_temp(home) as instance:
        for repeat in range(args.repeats):
            order = list(methods) if repeat % 2 == 0 else list(reversed(methods))
            for name in order:
                times[name].append(run_once(instance, methods[name]))
                print(f"{name}: {times[name][-1]:.1f} s", flush=True)
    medians = {name: statistics.median(t) for name, t in times.items()}
    spawn, fork = medians.values()
    print(f"{STEPS} steps, one at a time, median of {args.repeats}: spawn {spawn:.1f} s, forkserver {fork:.1f} s, "
          f"{spawn / fork:.2f}x ({(spawn - fork) / STEPS:.2f} s less per step)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
