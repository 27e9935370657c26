"""A reflection stage killed with SIGKILL mid-run loses at most the calls in flight and the last open group.

A real subprocess reflects rows against the fault server on 127.0.0.1 and is killed while calls
are still coming back; a second run then pays only for the rows whose answers were not saved: those
still in flight and those answered in the writer's last open group (`CallWriter.group_seconds`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from reflection_assets.schema import Pair
from reflection_assets.teacher.cache import GROUP_SECONDS, CallCache
from reflection_assets.teacher.runner import reflect_rows
from resources.teacher_http import OpenAICompatibleTeacher
from support.fault_server import FaultServer

REPO = Path(__file__).resolve().parents[3]
ROWS = 48
CONCURRENCY = 4
LATENCY_S = 0.5  # ~8 answers a second: the last open group holds a few, not half the stage
# What a kill may lose: answers in flight (one latency), the last open group, and its write under way.
AT_RISK_S = LATENCY_S + GROUP_SECONDS + 0.5

STAGE = textwrap.dedent(
    """
    import sys
    from reflection_assets.schema import Pair
    from reflection_assets.teacher.cache import CallCache
    from reflection_assets.teacher.runner import reflect_rows
    from resources.teacher_http import OpenAICompatibleTeacher
    url, path, rows, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    pairs = [Pair(f"ROW=r{i} Explain why the sky is blue.", f"Because of scattering ({i}).") for i in range(rows)]
    teacher = OpenAICompatibleTeacher(base_url=url, model="fault-model", max_concurrency=concurrency)
    reflect_rows(pairs, "instruction", teacher, CallCache(path))
    """
)


def pairs() -> list[Pair]:
    return [Pair(f"ROW=r{i} Explain why the sky is blue.", f"Because of scattering ({i}).") for i in range(ROWS)]


def test_sigkill_mid_stage_pays_again_only_for_calls_in_flight_or_in_the_last_group(tmp_path: Path) -> None:
    path = tmp_path / "calls.duckdb"
    with FaultServer(latency_s=LATENCY_S) as server:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
        proc = subprocess.Popen(
            [sys.executable, "-c", STAGE, server.url, str(path), str(ROWS), str(CONCURRENCY)],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + 180
        while server.request_count < ROWS // 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, f"the stage ended before the kill: {proc.stderr.read()[-2000:]}"
        killed_at = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        first_rows = {seen.row for seen in server.seen}
        saved = CallCache(path).count("ok")

        before = server.request_count
        teacher = OpenAICompatibleTeacher(base_url=server.url, model="fault-model", max_concurrency=CONCURRENCY)
        frame, stats = reflect_rows(pairs(), "instruction", teacher, CallCache(path))
        second_rows = {seen.row for seen in server.seen[before:]}

    paid_twice = first_rows & second_rows
    at_risk = {seen.row for seen in server.seen[:before] if seen.at > killed_at - AT_RISK_S}
    assert ROWS // 2 <= len(first_rows) < ROWS  # killed mid-stage
    assert saved >= len(first_rows) - len(at_risk)  # every call answered before the last group was on disk
    assert paid_twice <= at_risk, sorted(paid_twice - at_risk)
    assert len(at_risk) <= 3 * CONCURRENCY  # the bound means something: a few calls, not the stage
    assert (stats.calls_cached, stats.calls_made) == (saved, ROWS - saved)
    assert first_rows | second_rows == {f"r{i}" for i in range(ROWS)}
    assert (frame["outcome"] == "reflected").all()
    print(f"killed after {len(first_rows)} calls: {saved} saved, {len(paid_twice)} paid twice, "
          f"{stats.calls_made} made by the re-run")
