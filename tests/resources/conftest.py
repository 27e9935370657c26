"""The real vLLM server the `*_vllm*` tests run against, when REFLECTION_TEST_VLLM_URL names one."""

from __future__ import annotations

import os

import httpx
import pytest

URL_VARIABLE = "REFLECTION_TEST_VLLM_URL"


@pytest.fixture(scope="module")
def vllm() -> tuple[str, str]:
    """(base URL, served base model name) of the vLLM server named by REFLECTION_TEST_VLLM_URL.

    Skips when the variable is unset; fails when it is set but no vLLM answers there (whoever set
    it meant the test to run). The base model is the card without a `parent` (LoRA cards have one).
    """
    url = os.environ.get(URL_VARIABLE, "").strip().rstrip("/")
    if not url:
        pytest.skip(f"{URL_VARIABLE} is not set (a vLLM server's /v1 URL; scripts/vllm_cpu.sh serve starts one)")
    try:
        models = httpx.get(f"{url}/models", timeout=10.0).json()["data"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        pytest.fail(f"{URL_VARIABLE}={url} does not list models: {exc}")
    if not models or models[0].get("owned_by") != "vllm":
        pytest.fail(f"{URL_VARIABLE}={url} is not a vLLM server: {models[:1]}")
    base = next((m for m in models if not m.get("parent")), models[0])
    return url, str(base["id"])
