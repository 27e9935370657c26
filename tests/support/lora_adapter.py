"""A small LoRA adapter on the bundled student, saved as PEFT saves one (served and in-process evaluation tests)."""

from __future__ import annotations

import copy
from pathlib import Path


def make_adapter(folder: Path, seed: int = 3, rank: int = 8) -> Path:
    """Rank-8 LoRA on q/v whose B is random, not zero: the answers stay text but change ("12 + 35 is equal to 32")."""
    import torch
    from peft import LoraConfig, get_peft_model

    from support.fake_vllm import base_model

    base = copy.deepcopy(base_model("bundled")[0])  # the shared fp32 copy stays untouched
    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(folder)
    return folder
