"""Fold a LoRA adapter into its base model: one call, a plain model folder out."""

from __future__ import annotations

from pathlib import Path


def merge_adapter(base_model: str, adapter_path: str | Path, output_dir: str | Path) -> Path:
    """Load `base_model` in fp32, apply the adapter, merge it and save safetensors + tokenizer to `output_dir`.

    The result loads with `AutoModelForCausalLM.from_pretrained(output_dir)` (no PEFT needed), e.g. to
    serve it without LoRA support or to quantize it.
    """
    from peft import PeftModel

    from reflection_assets.model_store import load_model_and_tokenizer
    from reflection_assets.training.trainer import silence_bitsandbytes

    silence_bitsandbytes()
    base, tokenizer, _ = load_model_and_tokenizer(base_model, dtype="float32", device="cpu")
    merged = PeftModel.from_pretrained(base, str(adapter_path)).merge_and_unload()
    output = Path(output_dir)
    merged.save_pretrained(str(output), safe_serialization=True)
    tokenizer.save_pretrained(str(output))
    return output
