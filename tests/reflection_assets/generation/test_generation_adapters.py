"""Mixed LoRA adapters in one engine batch equal per-adapter generation (fp32, tiny Llama, non-zero B weights)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from reflection_assets.generation.engine import GenerationEngine, GenerationRequest
from support.tiny_lm import tiny_model, tiny_tokenizer

PROMPTS = ["Explain photosynthesis.", "Plants use light. " * 3, "Explain photosynthesis. Plants use light. " * 2]


@pytest.fixture(scope="module")
def adapted() -> tuple[Any, Any]:
    from peft import LoraConfig, get_peft_model

    tokenizer = tiny_tokenizer()
    config = {
        "r": 4,
        "lora_alpha": 8,
        "target_modules": ["q_proj", "v_proj", "up_proj", "down_proj"],
        "init_lora_weights": False,
    }
    model = get_peft_model(tiny_model(tokenizer, seed=5), LoraConfig(**config), adapter_name="first")
    model.add_adapter("second", LoraConfig(**config))
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():  # B weights clearly non-zero, so each adapter changes what the model writes
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return model.eval(), tokenizer


def alone(model: Any, tokenizer: Any, ids: tuple[int, ...], adapter: str | None, new_tokens: int) -> list[int]:
    """One prompt through generate() with only `adapter` active (the base: adapters disabled)."""
    kwargs = {
        "max_new_tokens": new_tokens,
        "min_new_tokens": new_tokens,
        "do_sample": False,
        "pad_token_id": tokenizer.pad_token_id,
        "temperature": None,
        "top_p": None,
        "top_k": None,
    }
    with torch.inference_mode():
        if adapter is None:
            with model.disable_adapter():
                out = model.generate(input_ids=torch.tensor([ids]), **kwargs)
        else:
            model.set_adapter(adapter)
            out = model.generate(input_ids=torch.tensor([ids]), **kwargs)
    return out[0, len(ids) :].tolist()


def test_mixed_adapter_batch_equals_per_adapter_generation(adapted: tuple[Any, Any]) -> None:
    model, tokenizer = adapted
    turns = [
        [{"role": "system", "content": "Be brief and exact, always."}, {"role": "user", "content": p}] for p in PROMPTS
    ]
    ids = [
        tuple(
            tokenizer(
                tokenizer.apply_chat_template(t, add_generation_prompt=True, tokenize=False), add_special_tokens=False
            )["input_ids"]
        )
        for t in turns
    ]
    plan = [(p, adapter) for p in ids for adapter in ("first", "second", None)]
    engine = GenerationEngine(model, tokenizer, num_threads=torch.get_num_threads())
    outputs = engine.generate([GenerationRequest(p, 10, adapter=adapter, min_new_tokens=10) for p, adapter in plan])
    expected = [alone(model, tokenizer, p, adapter, 10) for p, adapter in plan]
    assert [list(o.token_ids) for o in outputs] == expected
    # The adapters matter: the same prompt gives three different continuations.
    for k in range(0, len(plan), 3):
        assert len({tuple(e) for e in expected[k : k + 3]}) == 3
    # The shared prefix ran once per adapter (three of them), not once per row.
    assert engine.stats.prefix_tokens >= 3 * 8
    assert engine.stats.prefix_tokens_reused == len(plan) * engine.stats.prefix_tokens // 3


def test_a_failed_mixed_adapter_forward_leaves_no_adapter_hooks(adapted: tuple[Any, Any]) -> None:
    """PEFT leaves its per-row adapter hooks on every LoRA layer when a forward with `adapter_names` raises;
    the engine removes them, so the halved retry and any later plain forward see the right adapters."""
    from reflection_assets.generation.peft_hooks import PEFT_ROW_HOOKS, drop_adapter_hooks
    from support.oom import decoder, simulated_oom

    model, tokenizer = adapted

    def leftover() -> int:
        return sum(
            getattr(getattr(hook, "func", None), "__name__", "") in PEFT_ROW_HOOKS
            for module in model.modules()
            for hook in module._forward_pre_hooks.values()
        )

    ids = [tuple(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in PROMPTS]
    requests = [GenerationRequest(i, 4, adapter) for i in ids for adapter in (None, "first", "second")]
    want = GenerationEngine(model, tokenizer, num_threads=1, continuous=False).generate(requests)
    with simulated_oom(decoder(model), max_rows=2) as oom:
        got = GenerationEngine(model, tokenizer, num_threads=1).generate(requests)
    assert oom.failures > 0 and got == want and leftover() == 0
    with torch.inference_mode():  # a plain forward of another batch size: PEFT's leftovers would fail it
        model(input_ids=torch.tensor([ids[0], ids[0]]))

    # What PEFT does without the engine's cleanup, and what drop_adapter_hooks removes.
    with simulated_oom(decoder(model), max_rows=0), pytest.raises(torch.OutOfMemoryError):
        model(input_ids=torch.tensor([ids[0]]), adapter_names=["first"])
    left = leftover()
    assert left > 0 and drop_adapter_hooks(model) == left and leftover() == 0
