"""The runner against a real fault-injecting HTTP server on 127.0.0.1."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from reflection_assets.schema import Pair
from reflection_assets.teacher.backend import TeacherError
from reflection_assets.teacher.cache import CallCache
from reflection_assets.teacher.outcomes import OUTCOME_COLUMNS
from reflection_assets.teacher.runner import reflect_rows
from reflection_assets.teacher.settings import ReflectionSettings
from resources.teacher_http import OpenAICompatibleTeacher
from support.fault_server import FaultServer

MAX_ATTEMPTS = 4


@pytest.fixture
def server():  # type: ignore[no-untyped-def]
    with FaultServer(slow_s=1.5, retry_after="1") as srv:
        yield srv


def http_teacher(server: FaultServer, **overrides: object) -> OpenAICompatibleTeacher:
    config = dict(
        base_url=server.url, model="fault-model", max_concurrency=4, timeout_s=0.5, max_attempts=MAX_ATTEMPTS,
        backoff_initial_s=0.01, backoff_max_s=0.05,
    )
    config.update(overrides)
    return OpenAICompatibleTeacher(**config)  # type: ignore[arg-type]


def rows(faults: list[str]) -> list[Pair]:
    return [
        Pair(f"ROW=r{i} FAULT={f} Explain why the sky is blue.", f"Because of scattering ({i}).")
        for i, f in enumerate(faults)
    ]


FAULT_MIX = [
    "ok", "ok", "429x1", "429x2", "500x1", "503x2", "slowx1", "truncatedx1", "emptyx2",
    "unparsable", "500xalways", "503xalways", "400x1", "truncatedxalways",
]
EXPECTED_REQUESTS = [1, 1, 2, 3, 2, 3, 2, 2, 3, 1, MAX_ATTEMPTS, MAX_ATTEMPTS, 1, MAX_ATTEMPTS]


def test_every_fault_gives_every_row_exactly_one_outcome(server: FaultServer, tmp_path: Path) -> None:
    pairs = rows(FAULT_MIX)
    frame, stats = reflect_rows(pairs, "instruction", http_teacher(server), CallCache(tmp_path / "c.duckdb"),
                                ReflectionSettings(max_new_tokens=64))
    assert list(frame.columns) == OUTCOME_COLUMNS
    assert len(frame) == len(pairs) and frame["row_id"].is_unique
    outcomes = Counter(frame["outcome"])
    assert outcomes == {"reflected": 9, "parse_failed": 1, "teacher_error": 4}
    per_row = [len(server.requests_for(f"r{i}")) for i in range(len(pairs))]
    assert per_row == EXPECTED_REQUESTS
    assert max(per_row) <= MAX_ATTEMPTS  # the retry bound holds for every row
    assert server.request_count == stats.requests == sum(EXPECTED_REQUESTS)
    assert stats.retries == stats.requests - stats.calls_made
    # Retry-After: 1 was honoured.
    first, second = server.requests_for("r2")
    assert second.at - first.at >= 1.0
    # Failures keep the original pair whole, with the reason and the raw text.
    by_row = frame.set_index(frame.index)
    for i, pair in enumerate(pairs):
        row = by_row.iloc[i]
        if row["outcome"] != "reflected":
            assert (row["new_instruction"], row["new_input"], row["new_output"]) == (
                pair.instruction,
                pair.input,
                pair.output,
            )
            assert row["error"]
    assert "no changes needed" in by_row.iloc[9]["raw_text"] and by_row.iloc[9]["error"] == "missing_instruction_marker"
    assert "gave up after 4 attempts" in by_row.iloc[10]["error"] and "HTTP 500" in by_row.iloc[10]["error"]
    assert "HTTP 400" in by_row.iloc[12]["error"]
    reflected = by_row.iloc[0]
    assert reflected["new_instruction"] == "A harder, self-contained task for r0." and reflected["new_input"] == ""
    assert reflected["new_output"] == "A careful answer for r0."
    print(f"\nfault run: rows in {len(pairs)}, outcomes {dict(outcomes)}, requests {stats.requests}, "
          f"retries {stats.retries}, calls {stats.calls_made}")


def test_second_run_makes_no_teacher_calls(server: FaultServer, tmp_path: Path) -> None:
    pairs, cache = rows(["ok"] * 6 + ["unparsable"]), CallCache(tmp_path / "c.duckdb")
    _, first = reflect_rows(pairs, "instruction", http_teacher(server), cache)
    seen = server.request_count
    frame, second = reflect_rows(pairs, "instruction", http_teacher(server), cache)
    assert first.calls_made == 7
    assert (second.calls_made, second.calls_cached, second.requests, second.total_tokens) == (0, 7, 0, 0)
    assert server.request_count == seen
    assert frame["cached"].all() and Counter(frame["outcome"]) == {"reflected": 6, "parse_failed": 1}


def test_failed_calls_are_tried_again_next_run(server: FaultServer, tmp_path: Path) -> None:
    pairs, cache = rows(["ok", "500x4"]), CallCache(tmp_path / "c.duckdb")
    _, first = reflect_rows(pairs, "instruction", http_teacher(server), cache)
    frame, second = reflect_rows(pairs, "instruction", http_teacher(server), cache)
    assert first.outcomes == {"reflected": 1, "teacher_error": 1}
    assert (second.calls_made, second.calls_cached) == (1, 1)
    assert list(frame["outcome"]) == ["reflected", "reflected"]


def test_crashed_run_rerun_pays_only_for_what_is_missing(server: FaultServer, tmp_path: Path) -> None:
    pairs, cache = rows(["ok"] * 12), CallCache(tmp_path / "c.duckdb")

    def crash(done: int, total: int) -> None:
        if done >= 5:
            raise KeyboardInterrupt("simulated crash")

    with pytest.raises(KeyboardInterrupt):
        reflect_rows(pairs, "instruction", http_teacher(server, max_concurrency=1), cache, progress=crash)
    saved = cache.count("ok")
    assert saved == 5  # every completed call reached the cache before the next one started
    before = server.request_count
    _, stats = reflect_rows(pairs, "instruction", http_teacher(server), cache)
    assert (stats.calls_cached, stats.calls_made) == (saved, len(pairs) - saved)
    assert server.request_count - before == len(pairs) - saved


def test_call_cap_stops_cleanly_and_skips_the_rest(server: FaultServer, tmp_path: Path) -> None:
    pairs = rows(["ok"] * 8)
    frame, stats = reflect_rows(pairs, "instruction", http_teacher(server, max_concurrency=2),
                                CallCache(tmp_path / "c.duckdb"), ReflectionSettings(max_calls=3))
    assert stats.stopped_by == "max_calls" and stats.calls_made == 3 == server.request_count
    assert list(frame["outcome"]) == ["reflected"] * 3 + ["skipped"] * 5
    assert frame["error"].iloc[-1] == "max_calls reached before this row"
    assert frame["new_output"].iloc[-1] == pairs[-1].output


def test_token_cap_never_overspends(server: FaultServer, tmp_path: Path) -> None:
    pairs = rows(["ok"] * 8)
    cap = 3 * 800
    frame, stats = reflect_rows(
        pairs,
        "instruction",
        http_teacher(server, max_concurrency=1),
        CallCache(tmp_path / "c.duckdb"),
        ReflectionSettings(max_new_tokens=300, max_tokens=cap),
    )
    assert stats.stopped_by == "max_tokens"
    assert 0 < stats.calls_made < len(pairs) and stats.total_tokens <= cap
    assert Counter(frame["outcome"])["skipped"] == len(pairs) - stats.calls_made


def test_limit_reflects_the_first_rows_only(server: FaultServer, tmp_path: Path) -> None:
    frame, stats = reflect_rows(rows(["ok"] * 5), "instruction", http_teacher(server), CallCache(tmp_path / "c.duckdb"),
                                ReflectionSettings(limit=2))
    assert list(frame["outcome"]) == ["reflected"] * 2 + ["skipped"] * 3
    assert frame["error"].iloc[4] == "outside limit=2" and stats.limited_rows == 3 and server.request_count == 2


def test_duplicate_rows_share_one_call(server: FaultServer, tmp_path: Path) -> None:
    pair = rows(["ok"])[0]
    frame, stats = reflect_rows(
        [pair, pair, pair], "instruction", http_teacher(server), CallCache(tmp_path / "c.duckdb")
    )
    assert server.request_count == 1 and stats.calls_deduplicated == 2 and (frame["outcome"] == "reflected").all()


def test_response_stage_keeps_the_instruction(server: FaultServer, tmp_path: Path) -> None:
    pair = Pair("ROW=q1 Sort these numbers.", "1 2 3", input="3 1 2")
    frame, _ = reflect_rows([pair], "response", http_teacher(server), CallCache(tmp_path / "c.duckdb"))
    row = frame.iloc[0]
    assert (row["outcome"], row["stage"]) == ("reflected", "response")
    assert (row["new_instruction"], row["new_input"], row["new_output"]) == (
        pair.instruction,
        "3 1 2",
        "A fuller answer for q1.",
    )


def test_guided_generation_over_http(server: FaultServer, tmp_path: Path) -> None:
    teacher = http_teacher(server, guided=True)
    frame, stats = reflect_rows(rows(["ok", "ok"]), "instruction", teacher, CallCache(tmp_path / "c.duckdb"),
                                ReflectionSettings(guided=True, critique_tokens=16, max_new_tokens=32))
    assert (frame["outcome"] == "reflected").all()
    assert stats.calls_made == 2 and stats.requests == 6  # critique + two sections per row
    assert frame["new_instruction"].iloc[0] == "New Instruction written for r0."
    assert frame["new_output"].iloc[0] == "New Answer written for r0."
    probe, rest = server.seen[:2], server.seen[2:]  # one check that the server continues a prefix, first
    assert [s.body.get("continue_final_message", False) for s in probe] == [True, False] and stats.mode == "guided"
    continued = [s.body for s in rest if s.body["messages"][-1]["role"] == "assistant"]
    assert len(rest) == 6 and len(continued) == 4
    assert all(b["continue_final_message"] and not b["add_generation_prompt"] for b in continued)
    assert continued[0]["messages"][-1]["content"].endswith("[New Instruction]\n")
    reflect_rows([Pair("ROW=z0 Explain tides.", "The moon.")], "response", teacher, CallCache(tmp_path / "c.duckdb"),
                 ReflectionSettings(guided=True, critique_tokens=16, max_new_tokens=32))
    assert len(server.seen) == 8 + 2  # the same teacher checks once


@pytest.mark.parametrize(
    "behaviour, says", [("reject", "refused continue_final_message"), ("ignore", "ignored continue_final_message")]
)
def test_guided_needs_a_server_that_continues_a_prefix(behaviour: str, says: str, tmp_path: Path) -> None:
    with FaultServer(prefix=behaviour) as server:
        with pytest.raises(TeacherError, match=says) as raised:
            reflect_rows(
                rows(["ok"]),
                "instruction",
                http_teacher(server),
                CallCache(tmp_path / "c.duckdb"),
                ReflectionSettings(guided=True),
            )
        assert all("ROW=" not in str(s.body["messages"]) for s in server.seen)  # no row was sent
    assert "REFLECTION_TEACHER_GUIDED=false" in str(raised.value)
