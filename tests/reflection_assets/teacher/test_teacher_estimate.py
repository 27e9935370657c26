"""The cost estimate counts exactly the calls a run would make."""

from __future__ import annotations

from pathlib import Path

from reflection_assets.schema import Pair
from reflection_assets.teacher.cache import CallCache
from reflection_assets.teacher.estimate import estimate_cost
from reflection_assets.teacher.runner import reflect_rows
from reflection_assets.teacher.settings import ReflectionSettings
from resources.teacher_http import OpenAICompatibleTeacher
from support.fault_server import FaultServer


def pairs(n: int) -> list[Pair]:
    return [Pair(f"ROW=e{i} Describe a cat.", "Furry.") for i in range(n)]


def test_estimate_before_and_after_a_run(tmp_path: Path) -> None:
    cache, settings = CallCache(tmp_path / "c.duckdb"), ReflectionSettings(max_new_tokens=100, max_calls=5)
    with FaultServer() as server:
        teacher = OpenAICompatibleTeacher(base_url=server.url, model="m")
        identity = teacher.cache_identity()
        before = estimate_cost(pairs(6) + pairs(1), "instruction", identity, cache, settings)
        assert (before["rows"], before["rows_cached"], before["rows_duplicate"], before["calls"]) == (7, 0, 1, 6)
        assert before["max_completion_tokens"] == 600 and before["prompt_tokens"] > 0
        assert before["within_caps"] is False
        _, stats = reflect_rows(pairs(4), "instruction", teacher, cache, settings)
        after = estimate_cost(pairs(6), "instruction", identity, cache, settings)
        assert (after["rows_cached"], after["calls"]) == (4, 2) and after["within_caps"] is True
        _, rest = reflect_rows(pairs(6), "instruction", teacher, cache, settings)
        assert rest.calls_made == after["calls"]


def test_guided_and_limit() -> None:
    identity = {"backend": "transformers", "model": "x"}
    e = estimate_cost(
        pairs(5),
        "response",
        identity,
        None,
        ReflectionSettings(guided=True, critique_tokens=10, max_new_tokens=20, limit=3),
    )
    assert (e["calls"], e["requests"], e["rows_past_limit"]) == (3, 6, 2)
    assert e["max_completion_tokens"] == 3 * (10 + 20)
