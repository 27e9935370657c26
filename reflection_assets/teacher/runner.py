"""Reflect rows with a teacher: cache first, caps enforced, one outcome per row.

Used by both reflection stages and callable without Dagster: the asset passes its logger and
gets a DataFrame of outcomes plus a RunStats for metadata. Finished calls are committed to llm_calls
in groups as they come back (`CallWriter`: every quarter second or 256 calls), so a run killed at any
point (SIGKILL included) loses at most the calls in flight and the last open group, and its re-run pays
only for what is missing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import pandas as pd

from reflection_assets.hashing import stable_json
from reflection_assets.progress import Progress
from reflection_assets.schema import Pair
from reflection_assets.teacher.backend import TeacherBackend
from reflection_assets.teacher.budget import Budget
from reflection_assets.teacher.cache import CallCache, CallRecord, CallWriter, request_payload
from reflection_assets.teacher.outcomes import SKIPPED, Outcome, kept, outcome_of, outcomes_frame
from reflection_assets.teacher.planning import PlannedCall, plan_calls, row_id_of, worst_case_tokens
from reflection_assets.teacher.settings import ReflectionSettings
from reflection_assets.teacher.stats import RunStats
from reflection_assets.teacher.types import CALL_OK, CALL_SKIPPED, ChatResult, Stage

ProgressFn = Callable[[int, int], None]
LogFn = Callable[[str], None]


def result_from_cache(row: dict) -> ChatResult:
    return ChatResult(
        text=row["response_text"] or "",
        status=CALL_OK,
        prompt_tokens=int(row["prompt_tokens"] or 0),
        completion_tokens=int(row["completion_tokens"] or 0),
        latency_s=float(row["latency_s"] or 0.0),
        finish_reason=row["finish_reason"] or "",
    )


def group_by_key(planned: list[PlannedCall]) -> list[list[PlannedCall]]:
    """Identical requests (duplicate rows) share one call."""
    groups: dict[str, list[PlannedCall]] = {}
    for call in planned:
        groups.setdefault(call.key, []).append(call)
    return list(groups.values())


def reflect_rows(
    pairs: Sequence[Pair],
    stage: Stage,
    teacher: TeacherBackend,
    cache: CallCache,
    settings: ReflectionSettings | None = None,
    progress: ProgressFn | None = None,
    log: LogFn | None = None,
) -> tuple[pd.DataFrame, RunStats]:
    """Reflect `pairs` at `stage` ("instruction" or "response"); returns (outcomes, stats).

    The response stage reflects the answer of each given pair (the current pair after the
    instruction stage). Every input row gets exactly one outcome, in input order.
    """
    settings = settings or ReflectionSettings()
    started = time.monotonic()
    say: LogFn = log or (lambda _: None)
    if settings.guided and not teacher.supports_guided:
        raise ValueError(f"{type(teacher).__name__} cannot run guided generation with its current settings")
    run = _Run(list(pairs), stage, teacher, cache, settings)
    run.skip_past_limit()
    groups = run.answer_from_cache()
    identity = run.identity
    say(
        f"reflect {stage}: {len(run.pairs)} rows, {run.stats.calls_cached} cached, {len(groups)} calls to make, "
        f"{run.stats.limited_rows} past the limit ({identity.get('backend')} {identity.get('model')}, "
        f"{settings.prompt_version}, {run.stats.mode})"
    )
    run.call_teacher(groups, progress or Progress(say, f"reflect {stage}", unit="rows"))
    frame, stats = run.finish(started)
    if stats.stopped_by:
        say(f"reflect {stage}: {stats.stopped_by} cap reached; remaining rows skipped")
    say(
        f"reflect {stage}: done {stats.outcomes}; {stats.calls_made} calls, {stats.total_tokens} tokens, "
        f"{stats.retries} retries"
    )
    return frame, stats


class _Run:
    """One reflection run's phases over shared state: plan, answer from the cache, call, finish."""

    def __init__(
        self, pairs: list[Pair], stage: Stage, teacher: TeacherBackend, cache: CallCache, settings: ReflectionSettings
    ) -> None:
        self.pairs, self.stage, self.teacher, self.cache, self.settings = pairs, stage, teacher, cache, settings
        self.identity = teacher.cache_identity()
        self.planned, self.limited = plan_calls(pairs, stage, self.identity, settings)
        self.stats = RunStats(
            stage, self.identity.get("backend", ""), self.identity.get("model", ""), settings.prompt_version,
            "guided" if settings.guided else "unguided", rows_in=len(pairs),
        )
        self.outcomes: list[Outcome | None] = [None] * len(pairs)
        self.budget = Budget(
            settings.max_calls,
            settings.max_tokens,
            estimate_tokens=lambda r: worst_case_tokens(r, teacher.estimate_prompt_tokens(r)),
        )

    def skip_past_limit(self) -> None:
        """Rows past `limit` are kept as they are, marked skipped."""
        for i in self.limited:
            pair = self.pairs[i]
            self.outcomes[i] = kept(pair, row_id_of(pair), self.stage, SKIPPED, f"outside limit={self.settings.limit}")
        self.stats.limited_rows = len(self.limited)

    def answer_from_cache(self) -> list[list[PlannedCall]]:
        """Fill the rows the cache answers; return the calls still to make, identical requests grouped."""
        hits = self.cache.lookup(call.key for call in self.planned)
        for call in self.planned:
            if call.key in hits:
                result = result_from_cache(hits[call.key])
                self.outcomes[call.index] = outcome_of(
                    call.pair, row_id_of(call.pair), self.stage, call.key, result, cached=True
                )
        self.stats.calls_cached = sum(call.key in hits for call in self.planned)
        groups = group_by_key([call for call in self.planned if call.key not in hits])
        self.stats.calls_deduplicated = sum(len(g) - 1 for g in groups)
        return groups

    def call_teacher(self, groups: list[list[PlannedCall]], report: ProgressFn) -> None:
        """Send one request per group under the budget; every result is on disk when this returns."""
        done, total = self.stats.calls_cached, len(self.planned)
        report(done, total)
        requests = [group[0].request for group in groups]
        state = threading.Lock()  # teachers may report from several threads at once

        def on_result(j: int, result: ChatResult) -> None:
            nonlocal done
            group = groups[j]
            if result.status == CALL_SKIPPED:
                result.error = f"{self.budget.stopped_by or 'cap'} reached before this row"
            else:
                self.budget.settle(requests[j], result)
                writer.save(record_for(group[0], self.stage, self.identity, self.settings.prompt_version, result))
            with state:
                if result.status != CALL_SKIPPED:
                    count_call(self.stats, result)
                for call in group:
                    outcome = outcome_of(call.pair, row_id_of(call.pair), self.stage, call.key, result, cached=False)
                    self.outcomes[call.index] = outcome
                done += len(group)
                report(done, total)

        if requests:
            with CallWriter(self.cache) as writer:
                self.teacher.complete(requests, admit=self.budget.admit, on_result=on_result)
            flow = self.teacher.flow_stats()
            self.stats.peak_in_flight = int(flow.get("peak_limit", 0))
            self.stats.push_backs = int(flow.get("push_backs", 0))
            self.stats.rate_wait_s = round(float(flow.get("rate_wait_s", 0.0)), 3)

    def finish(self, started: float) -> tuple[pd.DataFrame, RunStats]:
        """Every row's outcome, in input order, and the run's stats."""
        missing = [i for i, o in enumerate(self.outcomes) if o is None]
        if missing:
            raise RuntimeError(f"teacher returned no result for rows {missing[:10]}")
        self.stats.stopped_by = self.budget.stopped_by
        self.stats.cache_lock_waits = self.cache.lock_waits
        frame = outcomes_frame([o for o in self.outcomes if o is not None])
        self.stats.outcomes = {k: int(v) for k, v in frame["outcome"].value_counts().items()}
        self.stats.elapsed_s = round(time.monotonic() - started, 3)
        return frame, self.stats


def record_for(call: PlannedCall, stage: str, identity: dict, prompt_version: str, result: ChatResult) -> CallRecord:
    return CallRecord(
        call_key=call.key,
        backend=str(identity.get("backend", "")),
        model=str(identity.get("model", "")),
        prompt_version=prompt_version,
        stage=stage,
        request_json=stable_json(request_payload(identity, prompt_version, call.request)),
        result=result,
    )


def count_call(stats: RunStats, result: ChatResult) -> None:
    stats.calls_made += 1
    stats.calls_failed += int(result.status != CALL_OK)
    stats.requests += result.requests
    stats.retries += result.retries
    stats.prompt_tokens += result.prompt_tokens
    stats.completion_tokens += result.completion_tokens
