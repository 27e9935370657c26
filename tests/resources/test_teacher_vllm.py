"""The HTTP teacher against a real vLLM server: guided stages, the judge's log-probabilities, 429 retries.

Runs when REFLECTION_TEST_VLLM_URL names a server's /v1 URL (`scripts/vllm_cpu.sh serve` starts one
with the bundled SmolLM2 on 127.0.0.1:8000); skips with that reason otherwise. A URL that is set but
does not answer as vLLM fails: whoever set it meant this test to run.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import dagster as dg
import httpx
import pytest

from reflection_assets.defs.assets.reflection import ReflectionConfig
from reflection_assets.defs.deployment import build_teacher
from reflection_assets.demo_data import DEMO_TRAIN_PATH
from reflection_assets.ingest.readers import read_dataset
from reflection_assets.teacher.cache import CallCache
from reflection_assets.teacher.prompts import BETTER_ANSWER, NEW_INSTRUCTION
from reflection_assets.teacher.runner import reflect_rows
from reflection_assets.teacher.settings import ReflectionSettings
from resources.teacher import Teacher
from resources.teacher_http import OpenAICompatibleTeacher
from support.rate_limit_proxy import RateLimitProxy

pytestmark = pytest.mark.slow


def demo_pairs(n: int) -> list:
    return read_dataset(DEMO_TRAIN_PATH).accepted[:n]


def test_both_stages_run_guided_from_environment_variables_alone(
    vllm: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    url, model = vllm
    for name, value in {"REFLECTION_TEACHER_BASE_URL": url, "REFLECTION_TEACHER_MODEL": model,
                        "REFLECTION_TEACHER_GUIDED": "true", "REFLECTION_TEACHER_CONCURRENCY": "4"}.items():
        monkeypatch.setenv(name, value)
    pairs = demo_pairs(4)
    cache = CallCache(tmp_path / "llm_calls.duckdb")

    @dg.asset
    def both_stages(context, teacher: Teacher) -> dict:  # type: ignore[no-untyped-def]
        settings = ReflectionConfig(max_new_tokens=96, critique_tokens=16).settings(teacher)  # the run says nothing
        first, first_stats = reflect_rows(pairs, "instruction", teacher, cache, settings, log=context.log.info)
        second, second_stats = reflect_rows(pairs, "response", teacher, cache, settings, log=context.log.info)
        return {"frames": (first, second), "stats": (first_stats, second_stats)}

    caplog.set_level(logging.INFO, logger="reflection_assets.teacher.chat_completions")
    result = dg.materialize([both_stages], resources={"teacher": build_teacher()})
    assert result.success
    (first, second), stats = result.output_for_node("both_stages").values()
    assert "continues an assistant prefix" in caplog.text  # the server was checked, and it can
    for frame, stat, marker in ((first, stats[0], NEW_INSTRUCTION), (second, stats[1], BETTER_ANSWER)):
        assert stat.mode == "guided" and stat.backend == "openai" and stat.calls_failed == 0
        assert stat.calls_made == len(pairs) and stat.requests >= 2 * len(pairs)  # a critique, then sections
        assert set(frame["outcome"]) <= {"reflected", "parse_failed"}  # parsing is the teacher's skill, not ours
        for text in frame["raw_text"]:  # the first marker was opened for it, and it went on writing after it
            assert marker in text and text.split(marker, 1)[1].strip()


def test_the_judge_reads_log_probabilities(vllm: tuple[str, str], caplog: pytest.LogCaptureFixture) -> None:
    url, model = vllm
    teacher = OpenAICompatibleTeacher(base_url=url, model=model, timeout_s=120)
    question = [{"role": "user", "content": "Which of these is a colour? A) red B) seven. Reply with one letter."}]
    probabilities = teacher.choose(question, ["A", "B"])
    assert (teacher.judge_stats.logprobs, teacher.judge_stats.text, teacher.judge_stats.none) == (1, 0, 0)
    assert "no log-probabilities" not in caplog.text
    # What the server says about the first token, read here independently: the judge must agree with it.
    # A judge that parsed the text would answer one-hot (1, 0); these are strictly between.
    body = {"model": model, "messages": question, "max_tokens": 1, "temperature": 0.0, "logprobs": True,
            "top_logprobs": 20}
    top = httpx.post(f"{url}/chat/completions", json=body, timeout=120).json()["choices"][0]["logprobs"]["content"][0]
    best = {}
    for entry in top["top_logprobs"]:
        token = entry["token"].strip().upper()
        if token in ("A", "B"):
            best[token] = max(best.get(token, -math.inf), entry["logprob"])
    assert set(best) == {"A", "B"}
    expected_a = math.exp(best["A"]) / (math.exp(best["A"]) + math.exp(best["B"]))
    assert probabilities == pytest.approx([expected_a, 1 - expected_a], abs=1e-6)
    assert 0.0 < probabilities[0] < 1.0


def test_429_from_a_proxy_in_front_of_vllm_is_retried(vllm: tuple[str, str], tmp_path: Path) -> None:
    url, model = vllm
    pairs = demo_pairs(3)
    with RateLimitProxy(upstream=url, reject_every=2, retry_after="0.2") as proxy:
        teacher = OpenAICompatibleTeacher(base_url=proxy.url, model=model, max_concurrency=2, max_attempts=5,
                                          timeout_s=120, backoff_initial_s=0.05, backoff_max_s=0.2)
        frame, stats = reflect_rows(pairs, "instruction", teacher, CallCache(tmp_path / "llm_calls.duckdb"),
                                    ReflectionSettings(max_new_tokens=32))
    assert stats.mode == "unguided" and stats.calls_made == len(pairs) and stats.calls_failed == 0
    assert proxy.rejected >= len(pairs) // 2 and stats.retries == proxy.rejected
    assert stats.requests == proxy.rejected + proxy.forwarded and proxy.forwarded == len(pairs)
    assert frame["raw_text"].str.len().min() > 0
