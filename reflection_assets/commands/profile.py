"""Where a graph run's wall time went (`demo --profile`): per step, model loads and the rest (work), from the
runs' own step events in the instance and this process's model loads (`model_store.LOADS`); plus what no
step accounts for: the process's start-up and imports before the first run, and each run's own overhead
(run start to first step, between steps, last step to run end).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reflection_assets.model_store import ModelLoad


@dataclass(frozen=True)
class StepTime:
    run: str  # the job and its partition, as the console names it
    step: str
    started: float
    ended: float
    load_s: float = 0.0

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    @property
    def work_s(self) -> float:
        return max(0.0, self.seconds - self.load_s)


@dataclass(frozen=True)
class Profile:
    startup_s: float  # process start (or the CLI's first line) to the first run's start
    steps: list[StepTime]
    run_overhead_s: float  # run wall time that no step covers, summed over runs
    loads_outside_steps_s: float
    total_s: float  # process start to now

    @property
    def step_s(self) -> float:
        return sum(s.seconds for s in self.steps)

    @property
    def load_s(self) -> float:
        return sum(s.load_s for s in self.steps) + self.loads_outside_steps_s


def process_started() -> float:
    """This process's start (time.time() scale), from /proc on Linux; else when this module was imported."""
    try:
        with open("/proc/self/stat") as stat:
            ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as boot:
            booted = next(int(line.split()[1]) for line in boot if line.startswith("btime"))
        return booted + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return IMPORTED


IMPORTED = time.time()


def attribute_loads(steps: Sequence[StepTime], loads: Sequence[ModelLoad]) -> tuple[list[StepTime], float]:
    """Each load charged to the step it happened in (by its midpoint); the seconds of loads in no step."""
    charged = [0.0] * len(steps)
    outside = 0.0
    for load in loads:
        middle = (load.started + load.ended) / 2
        index = next((i for i, s in enumerate(steps) if s.started <= middle <= s.ended), None)
        if index is None:
            outside += load.ended - load.started
        else:
            charged[index] += load.ended - load.started
    return [StepTime(s.run, s.step, s.started, s.ended, load) for s, load in zip(steps, charged)], outside


def run_profile(instance: Any, runs: Sequence[tuple[str, str]], loads: Sequence[ModelLoad], started: float) -> Profile:
    """The profile of `runs` ((console label, run id), in order) recorded in `instance`."""
    steps: list[StepTime] = []
    overhead = 0.0
    first_start = None
    for label, run_id in runs:
        stats = instance.get_run_stats(run_id)
        if stats.start_time is None or stats.end_time is None:
            continue
        first_start = stats.start_time if first_start is None else first_start
        run_steps = sorted(
            (
                StepTime(label, s.step_key, s.start_time, s.end_time)
                for s in instance.get_run_step_stats(run_id)
                if s.start_time is not None and s.end_time is not None
            ),
            key=lambda s: s.started,
        )
        steps += run_steps
        overhead += (stats.end_time - stats.start_time) - sum(s.seconds for s in run_steps)
    steps, outside = attribute_loads(steps, loads)
    startup = (first_start - started) if first_start is not None else 0.0
    return Profile(startup, steps, overhead, outside, time.time() - started)


def profile_lines(profile: Profile) -> list[str]:
    """The profile as a small table: the biggest steps first, then the parts no step covers."""
    rows = sorted(profile.steps, key=lambda s: -s.seconds)
    name_width = max([len(f"{s.run} {s.step}") for s in rows] + [24])
    lines = [
        f"where the time went ({profile.total_s:.0f} s from process start):",
        f"  {'step':<{name_width}}  {'wall s':>7}  {'load s':>7}  {'work s':>7}",
    ]
    lines += [
        f"  {f'{s.run} {s.step}':<{name_width}}  {s.seconds:7.1f}  {s.load_s:7.1f}  {s.work_s:7.1f}"
        for s in rows
        if s.seconds >= 0.5
    ]
    small = [s for s in rows if s.seconds < 0.5]
    if small:
        lines.append(f"  {f'{len(small)} steps under 0.5 s':<{name_width}}  {sum(s.seconds for s in small):7.1f}")
    lines += [
        f"  steps: {profile.step_s:.1f} s, of which model loads {sum(s.load_s for s in profile.steps):.1f} s",
        f"  process start-up and imports before the first run: {profile.startup_s:.1f} s",
        f"  run overhead (no step running, {len({s.run for s in profile.steps})} runs): {profile.run_overhead_s:.1f} s",
    ]
    if profile.loads_outside_steps_s:
        lines.append(f"  model loads outside steps: {profile.loads_outside_steps_s:.1f} s")
    return lines
