"""The teacher stage against a server that answers at once: calls per second, the project vs its previous path.

Side by side in one run, alternating, each on a fresh `llm_calls` file: `reflect_rows` (the instruction
stage, unguided) over `--calls` rows against the loopback fault server (its own process, no latency),
with `--concurrency` requests in flight:

- **now**: finished calls committed in groups by a writer thread (one statement per group), requests spread
  over small connection pools (`http_retries.CONNECTIONS_PER_CLIENT`), requests in flight grown from
  `initial_concurrency` to the ceiling while the server keeps up (`flow_control.AdaptiveLimit`);
- **before** (34f020c, reproduced here): each saver waits until its record is written, a group of whoever
  finished together per `executemany` (~6 ms a row on DuckDB), one connection pool for every request, no flow
  control (every worker sends at once).

What is timed is the client's own work per call: the server does nothing but answer.

    python benchmarks/teacher_client.py [--calls 3000] [--concurrency 64] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

SERVER = textwrap.dedent(
    """
    import signal, sys
    sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
    from support.fault_server import FaultServer
    with FaultServer() as server:
        print(server.url, flush=True)
        signal.sigwait([signal.SIGTERM, signal.SIGINT])
    """
)

# 34f020c's upsert, one row per statement execution.
BEFORE_UPSERT = """
INSERT INTO llm_calls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, now(), now())
ON CONFLICT (call_key) DO UPDATE SET
    response_text = excluded.response_text, status = excluded.status, error = excluded.error,
    finish_reason = excluded.finish_reason, prompt_tokens = excluded.prompt_tokens,
    completion_tokens = excluded.completion_tokens, latency_s = excluded.latency_s,
    requests = excluded.requests, tries = llm_calls.tries + 1, updated_at = now()
WHERE llm_calls.status <> 'ok'
"""


class NoFlowControl:
    """34f020c had none: every worker sends at once, nothing is counted."""

    def __init__(self, ceiling: int, start: int = 0) -> None:
        self.ceiling, self.peak, self.throttles = ceiling, ceiling, 0

    async def acquire(self) -> None:
        return None

    async def release(self) -> None:
        return None

    def succeeded(self) -> None:
        return None

    def throttled(self) -> None:
        return None


class BeforeWriter:
    """34f020c's CallWriter: `save` returns once the record is on disk; whoever holds the lock writes all pending."""

    def __init__(self, cache) -> None:  # noqa: ANN001
        self.cache, self._pending, self._added, self._durable = cache, [], 0, 0
        self._pending_lock, self._write_lock = threading.Lock(), threading.Lock()

    def __enter__(self) -> BeforeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def save(self, record) -> None:  # noqa: ANN001
        with self._pending_lock:
            self._pending.append(record)
            self._added += 1
            mine = self._added
        with self._write_lock:
            if self._durable >= mine:
                return
            with self._pending_lock:
                batch, self._pending, upto = self._pending, [], self._added
            self.cache._run(lambda con: con.executemany(BEFORE_UPSERT, [r.values() for r in batch]))
            self._durable = upto


def pairs(n: int) -> list:
    from reflection_assets.schema import Pair

    return [Pair(f"ROW=r{i} Explain why the sky is blue, take {i}.", f"Because of scattering ({i}).") for i in range(n)]


def run_stage(url: str, calls: int, concurrency: int, before: bool) -> tuple[float, dict]:
    from reflection_assets import http_retries
    from reflection_assets.teacher import chat_completions, runner
    from reflection_assets.teacher.cache import CallCache, CallWriter
    from reflection_assets.teacher.settings import ReflectionSettings
    from resources.teacher_http import OpenAICompatibleTeacher

    pool_size, writer, flow = http_retries.CONNECTIONS_PER_CLIENT, runner.CallWriter, chat_completions.AdaptiveLimit
    if before:
        http_retries.CONNECTIONS_PER_CLIENT, runner.CallWriter = 10**6, BeforeWriter
        chat_completions.AdaptiveLimit = NoFlowControl
    try:
        folder = tempfile.mkdtemp()
        cache = CallCache(Path(folder) / "llm_calls.duckdb")
        teacher = OpenAICompatibleTeacher(base_url=url, model="instant", max_concurrency=concurrency)
        started = time.perf_counter()
        _, stats = runner.reflect_rows(pairs(calls), "instruction", teacher, cache, ReflectionSettings(guided=False))
        seconds = time.perf_counter() - started
        assert cache.count("ok") == calls, (cache.count("ok"), calls)
        return seconds, stats.outcomes
    finally:
        http_retries.CONNECTIONS_PER_CLIENT, runner.CallWriter = pool_size, writer
        chat_completions.AdaptiveLimit = flow
        assert CallWriter is runner.CallWriter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(REPO)], stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().strip()
        rates: dict[str, list[float]] = {"before": [], "now": []}
        for _ in range(args.repeats):
            for path in ("before", "now"):
                seconds, outcomes = run_stage(url, args.calls, args.concurrency, before=path == "before")
                rates[path].append(args.calls / seconds)
                print(f"{path:6s} {args.calls} calls, {args.concurrency} in flight: {seconds:6.1f} s, "
                      f"{args.calls / seconds:6.1f} calls/s {outcomes}", flush=True)
    finally:
        server.terminate()
    before, now = statistics.median(rates["before"]), statistics.median(rates["now"])
    print(f"\nmedian calls/s: before {before:.1f}, now {now:.1f}, now / before {now / before:.1f}x")


if __name__ == "__main__":
    main()
