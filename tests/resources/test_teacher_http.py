"""OpenAI-compatible teacher: retries, Retry-After, choose, configuration, and the API key's secrecy."""

from __future__ import annotations

import logging
import math
import socket
from pathlib import Path

import dagster as dg
import pytest
from tenacity import RetryCallState

from reflection_assets.defs.deployment import build_teacher
from reflection_assets.http_retries import RetryableError, RetryAfterWait, parse_retry_after
from reflection_assets.schema import Pair
from reflection_assets.teacher.backend import TeacherError
from reflection_assets.teacher.cache import CallCache
from reflection_assets.teacher.chat_completions import Reply, read_choice
from reflection_assets.teacher.runner import reflect_rows
from reflection_assets.teacher.types import ChatRequest
from resources.teacher_http import OpenAICompatibleTeacher
from resources.teacher_local import TransformersTeacher
from support.fault_server import FaultServer

SENTINEL = "sk-SENTINEL-7f3a9c1e-do-not-leak"


def teacher_for(url: str, **overrides: object) -> OpenAICompatibleTeacher:
    config = dict(base_url=url, model="m", max_concurrency=4, timeout_s=0.5, max_attempts=3,
                  backoff_initial_s=0.01, backoff_max_s=0.05)
    config.update(overrides)
    return OpenAICompatibleTeacher(**config)  # type: ignore[arg-type]


def test_api_key_never_leaks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # httpx, tenacity and our own loggers, at their chattiest
    faults = ["ok", "429x1", "500xalways", "echoauth", "unparsable", "slowx1", "truncatedx1"]
    pairs = [Pair(f"ROW=s{i} FAULT={f} Name a prime.", "7") for i, f in enumerate(faults)]
    cache_path = tmp_path / "c.duckdb"
    with FaultServer(slow_s=1.0, retry_after="0.2") as server:
        teacher = teacher_for(server.url, api_key=SENTINEL)
        frame, stats = reflect_rows(
            pairs, "instruction", teacher, CallCache(cache_path), log=logging.getLogger("t").info
        )
        assert server.auth_headers and set(server.auth_headers) == {f"Bearer {SENTINEL}"}  # it is sent...
    assert stats.outcomes == {"reflected": 4, "teacher_error": 2, "parse_failed": 1}
    echoed = frame.iloc[3]["error"]
    assert "HTTP 401" in echoed and "Bearer ***" in echoed  # ...and scrubbed where a server echoes it

    texts = [caplog.text, repr(teacher), str(teacher), repr(frame.to_dict("records")), repr(stats.metadata())]
    with pytest.raises(Exception) as raised:  # an exception raised through the resource
        teacher.choose([{"role": "user", "content": "ROW=x FAULT=echoauth pick"}], ["A", "B"])
    texts += [str(raised.value), repr(raised.value)]
    texts.append(cache_path.read_bytes().decode("latin-1"))
    texts.append(repr(CallCache(cache_path).frame().to_dict("records")))
    for text in texts:
        assert SENTINEL not in text
    assert "api_key='***'" in repr(teacher)


def test_key_is_optional_and_no_header_is_sent_without_one() -> None:
    with FaultServer() as server:
        [result] = teacher_for(server.url).complete([ChatRequest.of([{"role": "user", "content": "ROW=a hi"}])])
        assert result.ok and server.auth_headers == []
    assert "api_key=None" in repr(teacher_for("http://x"))


def test_retry_after_is_honoured_and_attempts_are_capped() -> None:
    with FaultServer(retry_after="1") as server:
        teacher = teacher_for(server.url, max_attempts=3)
        ok, failed = teacher.complete([
            ChatRequest.of([{"role": "user", "content": "ROW=a FAULT=429x1 hi"}]),
            ChatRequest.of([{"role": "user", "content": "ROW=b FAULT=429xalways hi"}]),
        ])
        first, second = server.requests_for("a")
        assert ok.ok and (ok.requests, ok.retries) == (2, 1) and second.at - first.at >= 1.0
        assert not failed.ok and (failed.requests, failed.retries) == (3, 2) == (len(server.requests_for("b")), 2)
        assert failed.error.startswith("gave up after 3 attempts") and "HTTP 429" in failed.error


def test_connection_refused_is_retried_then_reported() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    [result] = teacher_for(f"http://127.0.0.1:{port}/v1", max_attempts=2).complete(
        [ChatRequest.of([{"role": "user", "content": "hi"}])]
    )
    assert not result.ok and result.requests == 2 and "ConnectError" in result.error


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 - 10) == pytest.approx(10.0)
    assert parse_retry_after("-5") == 0.0


def test_retry_after_wait_bounds() -> None:
    wait = RetryAfterWait(initial=0.01, maximum=0.05, max_retry_after=5.0)

    def state(exc: Exception) -> RetryCallState:
        s = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        s.attempt_number = 2
        s.set_exception((type(exc), exc, None))
        return s

    assert 2.0 <= wait(state(RetryableError("HTTP 429", retry_after=2.0))) <= 2.3
    assert wait(state(RetryableError("HTTP 429", retry_after=600.0))) == 5.0
    assert 0.0 <= wait(state(RetryableError("HTTP 500"))) <= 0.05


def test_choose_reads_logprobs_when_the_server_offers_them(caplog: pytest.LogCaptureFixture) -> None:
    with FaultServer(logprobs=True) as server:
        teacher = teacher_for(server.url)
        probs = teacher.choose([{"role": "user", "content": "A or B?"}], ["A", "B"])
    expected_a = math.exp(-0.2) / (math.exp(-0.2) + math.exp(-1.8))
    assert probs == pytest.approx([expected_a, 1 - expected_a])
    assert server.seen[0].body["logprobs"] is True and server.seen[0].body["max_tokens"] == 1
    assert teacher.judge_stats.metadata() == {"judge_choices": 1, "judge_from_logprobs": 1, "judge_from_text": 0,
                                              "judge_from_none": 0}
    assert "no log-probabilities" not in caplog.text


def test_choose_falls_back_to_the_text_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with FaultServer(logprobs=False) as server:  # the fault server's reply text names no option
        teacher = teacher_for(server.url)
        assert teacher.choose([{"role": "user", "content": "A or B?"}], ["A", "B"]) == [0.5, 0.5]
    assert (teacher.judge_stats.logprobs, teacher.judge_stats.text, teacher.judge_stats.none) == (0, 0, 1)
    assert "returned no log-probabilities" in caplog.text and "a tie" in caplog.text


def test_choose_without_logprobs_reads_the_text() -> None:
    reply = Reply("B", 0, 0, "stop", {"choices": [{"message": {"content": "B"}}]})
    assert read_choice(reply, ["A", "B"]) == ([0.0, 1.0], "text")
    vague = Reply("Hmm", 0, 0, "stop", {"choices": [{"message": {"content": "Hmm"}}]})
    assert read_choice(vague, ["A", "B"]) == ([0.5, 0.5], "none")
    offered = {"choices": [{"message": {"content": "B"}, "logprobs": {"content": [
        {"token": "B", "logprob": -0.1,
         "top_logprobs": [{"token": "B", "logprob": -0.1}, {"token": "A", "logprob": -2.4}]}]}}]}
    probs, source = read_choice(Reply("B", 0, 0, "stop", offered), ["A", "B"])
    assert source == "logprobs" and 0.5 < probs[1] < 1.0  # the text says B; the probabilities say how sure


def test_build_teacher() -> None:
    remote = build_teacher(
        {
            "REFLECTION_TEACHER_BASE_URL": "http://127.0.0.1:9/v1",
            "REFLECTION_TEACHER_MODEL": "qwen",
            "REFLECTION_TEACHER_API_KEY": SENTINEL,
        }
    )
    assert isinstance(remote, OpenAICompatibleTeacher) and remote.api_key == SENTINEL and SENTINEL not in repr(remote)
    assert remote.cache_identity() == {"backend": "openai", "model": "qwen"}
    with pytest.raises(TeacherError, match="REFLECTION_TEACHER_MODEL"):
        build_teacher({"REFLECTION_TEACHER_BASE_URL": "http://x/v1"})
    local = build_teacher({})
    assert isinstance(local, TransformersTeacher) and local.model_ref == "bundled" and local.supports_guided
    assert not remote.guided_by_default


def test_key_from_env_var_stays_out_of_dagster_logs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REFLECTION_TEACHER_API_KEY", SENTINEL)
    with FaultServer() as server:

        @dg.asset
        def reflections(context, teacher: OpenAICompatibleTeacher):  # type: ignore[no-untyped-def]
            pairs = [Pair("ROW=d1 FAULT=500x1 Q", "A"), Pair("ROW=d2 FAULT=echoauth Q", "A")]
            context.log.info(f"teacher: {teacher!r}")
            frame, stats = reflect_rows(
                pairs, "instruction", teacher, CallCache(tmp_path / "c.duckdb"), log=context.log.info
            )
            context.log.info(frame.to_string())
            return dg.MaterializeResult(metadata=stats.metadata())

        teacher = OpenAICompatibleTeacher(
            base_url=server.url,
            model="m",
            api_key=dg.EnvVar("REFLECTION_TEACHER_API_KEY"),
            backoff_initial_s=0.01,
            backoff_max_s=0.02,
        )
        with dg.instance_for_test() as instance:
            result = dg.materialize([reflections], resources={"teacher": teacher}, instance=instance)
            assert result.success
            assert set(server.auth_headers) == {f"Bearer {SENTINEL}"}
            records = instance.get_records_for_run(result.run_id).records
            dump = "\n".join(repr(r.event_log_entry) for r in records)
    assert "Bearer ***" in dump  # the echoed credentials were logged, masked
    assert SENTINEL not in dump


def test_requests_in_flight_grow_while_the_server_keeps_up_and_halve_when_it_pushes_back() -> None:
    healthy = [ChatRequest.of([{"role": "user", "content": f"ROW=h{i} hi"}]) for i in range(200)]
    pushed = [ChatRequest.of([{"role": "user", "content": f"ROW=p{i} FAULT=429x1 hi"}]) for i in range(40)]
    with FaultServer(retry_after="0", latency_s=0.005) as server:
        teacher = teacher_for(server.url, max_concurrency=32, initial_concurrency=2)
        assert all(r.ok for r in teacher.complete(healthy))
        grown = teacher.flow_stats()
        assert all(r.ok for r in teacher.complete(pushed))  # every push-back retried to an answer
        cut = teacher.flow_stats()
    assert grown["peak_limit"] == 32 and grown["push_backs"] == 0  # from 2 to the ceiling
    assert cut["push_backs"] >= 1


def test_the_stage_stats_say_how_the_server_paced_it(tmp_path: Path) -> None:
    pairs = [Pair(f"ROW=f{i} {'FAULT=429x1 ' if i % 5 == 0 else ''}Name a prime.", "7") for i in range(40)]
    with FaultServer(retry_after="0", latency_s=0.005) as server:
        teacher = teacher_for(server.url, max_concurrency=16, initial_concurrency=2)
        _, stats = reflect_rows(pairs, "instruction", teacher, CallCache(tmp_path / "c.duckdb"))
    assert stats.push_backs >= 1 and 2 <= stats.peak_in_flight <= 16
    assert {"peak_in_flight", "push_backs", "rate_wait_s"} <= set(stats.metadata())  # metadata and MLflow


def test_a_requests_per_minute_limit_paces_the_stage() -> None:
    requests = [ChatRequest.of([{"role": "user", "content": f"ROW=r{i} hi"}]) for i in range(4)]
    with FaultServer() as server:
        teacher = teacher_for(server.url, requests_per_minute=120)  # two a second, a bucket of 120
        backend = teacher.backend()
        started = server.request_count
        assert all(r.ok for r in teacher.complete(requests))
        assert server.request_count - started == 4 and backend.last_flow["rate_wait_s"] == 0  # within the bucket
