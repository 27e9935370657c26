"""A tiny Llama with two LoRA adapters (non-zero B, so each changes the outputs), fp32."""

from __future__ import annotations

import pytest

TARGETS = ["q_proj", "v_proj", "down_proj"]


def lora_config():
    from peft import LoraConfig

    # init_lora_weights=False: B is random, not zero, so an adapter really changes the model.
    return LoraConfig(r=4, lora_alpha=16, target_modules=TARGETS, init_lora_weights=False)


def tiny_peft_model(adapters=("first", "second")):
    import torch
    from peft import get_peft_model

    from tests.support.tiny_lm import tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    torch.manual_seed(1)
    model = get_peft_model(tiny_model(tokenizer), lora_config(), adapter_name=adapters[0])
    for name in adapters[1:]:
        model.add_adapter(name, lora_config())
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def tiny_peft():
    return tiny_peft_model()
