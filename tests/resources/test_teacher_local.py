"""The in-process teacher's resource: what it says about its model (the work is tested in
tests/reflection_assets/teacher/test_local_teacher.py)."""

from __future__ import annotations

import pytest

from resources.teacher_local import TransformersTeacher
from support.tiny_lm import tiny_teacher


@pytest.fixture(scope="module")
def tiny() -> TransformersTeacher:
    return tiny_teacher(batch_size=4)


def test_the_dtype_and_why_are_said(tiny: TransformersTeacher, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert tiny.dtype_choice() == "float32 (default: CPU without native bf16)"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert tiny.dtype_choice() == "float32 (as the model was loaded)"  # handed in, not chosen here
    assert TransformersTeacher(dtype="bfloat16").dtype_choice().startswith("bfloat16 (set:")


def test_cache_identity_of_a_loaded_model(tiny: TransformersTeacher) -> None:
    assert tiny.cache_identity() == {
        "backend": "transformers",
        "model": "tiny-llama",
        "dtype": "torch.float32",
        "device": "cpu",
    }


def test_the_model_is_not_loaded_to_estimate_or_name_it() -> None:
    from reflection_assets.teacher.types import ChatRequest, Sampling

    teacher = TransformersTeacher(model_ref="/models/not-here")
    request = ChatRequest.of([{"role": "user", "content": "Explain photosynthesis."}], Sampling())
    assert teacher.estimate_prompt_tokens(request) > 0 and teacher.model_name() == "in-process /models/not-here"
    assert teacher._local is None
