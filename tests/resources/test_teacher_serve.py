"""The OpenAI-compatible teacher against a real `transformers serve` with the bundled model.

The server is given the de-quantized safetensors directory of the bundled SmolLM2 (from
reflection_assets.model_store) as its forced model, on 127.0.0.1, with the hub switched off.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reflection_assets.schema import Pair
from reflection_assets.teacher.backend import TeacherError
from reflection_assets.teacher.cache import CallCache
from reflection_assets.teacher.runner import reflect_rows
from reflection_assets.teacher.settings import ReflectionSettings
from resources.teacher_http import OpenAICompatibleTeacher

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served_model() -> Iterator[tuple[str, str]]:
    """(base_url, model name) of a `transformers serve` process started for this module."""
    pytest.importorskip("fastapi")
    from reflection_assets.model_store import local_dir

    model_dir, _ = local_dir("bundled")
    cli = shutil.which("transformers", path=str(Path(sys.executable).parent)) or shutil.which("transformers")
    if cli is None:
        pytest.skip("the transformers CLI is not installed")
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen(
        [cli, "serve", model_dir, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--dtype", "float32"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited: {proc.stdout.read()[-2000:] if proc.stdout else ''}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail("transformers serve did not become healthy in 180 s")
        yield f"http://127.0.0.1:{port}/v1", model_dir
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_reflection_end_to_end_over_transformers_serve(served_model: tuple[str, str], tmp_path: Path) -> None:
    base_url, model = served_model
    teacher = OpenAICompatibleTeacher(base_url=base_url, model=model, max_concurrency=2, timeout_s=120, max_attempts=2)
    pairs = [Pair("Give two tips for staying healthy.", "Sleep and exercise."),
             Pair("Translate to French.", "Bonjour", input="Good morning")]
    cache = CallCache(tmp_path / "c.duckdb")
    settings = ReflectionSettings(max_new_tokens=16)
    frame, stats = reflect_rows(pairs, "instruction", teacher, cache, settings)
    assert len(frame) == 2 and set(frame["outcome"]) <= {"reflected", "parse_failed"}
    assert stats.calls_made == 2 and stats.requests == 2 and stats.calls_failed == 0
    assert stats.prompt_tokens > 100 and 0 < stats.completion_tokens <= 32  # the server's own usage counts
    assert all(frame["raw_text"].str.len() > 0)
    _, again = reflect_rows(pairs, "instruction", teacher, cache, settings)
    assert (again.calls_made, again.calls_cached) == (0, 2)


def test_choose_falls_back_to_the_text_when_logprobs_are_not_offered(served_model: tuple[str, str]) -> None:
    base_url, model = served_model
    teacher = OpenAICompatibleTeacher(base_url=base_url, model=model, timeout_s=120)
    probs = teacher.choose([{"role": "user", "content": "Reply with the single letter A."}], ["A", "B"])
    assert sum(probs) == pytest.approx(1.0) and len(probs) == 2


def test_guided_generation_stops_with_the_reason_on_a_server_that_cannot_continue(
    served_model: tuple[str, str], tmp_path: Path
) -> None:
    base_url, model = served_model
    teacher = OpenAICompatibleTeacher(base_url=base_url, model=model, timeout_s=120, max_attempts=2, guided=True)
    with pytest.raises(TeacherError, match="refused continue_final_message") as raised:
        reflect_rows([Pair("Give two tips for staying healthy.", "Sleep and exercise.")], "instruction", teacher,
                     CallCache(tmp_path / "c.duckdb"), ReflectionSettings(guided=True, max_new_tokens=8))
    assert "HTTP 422" in str(raised.value) and "REFLECTION_TEACHER_GUIDED=false" in str(raised.value)
