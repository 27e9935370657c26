from pathlib import Path

import pytest
import torch

from reflection_assets import model_store
from reflection_assets.model_store import ModelReferenceError, resolve_reference


def test_bundled_reference_resolves_to_the_packaged_gguf():
    source = resolve_reference("bundled")
    assert source.kind == "gguf"
    assert source.location.endswith(".gguf") and Path(source.location).is_file()


def test_missing_gguf_file_is_a_clear_error(tmp_path):
    with pytest.raises(ModelReferenceError, match="no such GGUF file"):
        resolve_reference(str(tmp_path / "missing.gguf"))


def test_directory_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelReferenceError, match="config.json"):
        resolve_reference(str(tmp_path))


def test_other_strings_are_hub_ids():
    assert resolve_reference("HuggingFaceTB/SmolLM2-135M-Instruct").kind == "hub"


def test_local_directory_fingerprint_follows_content(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"a")
    first = model_store.local_dir(str(tmp_path))[1]
    (tmp_path / "model.safetensors").write_bytes(b"b")
    assert model_store.local_dir(str(tmp_path))[1] != first


def test_bundled_model_loads_from_safetensors_cache(bundled_model):
    model, tokenizer, fingerprint = bundled_model
    assert fingerprint.startswith("gguf:")
    folder = Path(model_store.local_dir("bundled")[0])
    assert (folder / "model.safetensors").is_file()
    assert model.dtype == torch.float32 and not model.training
    ids = tokenizer("The capital of France is", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0])


@pytest.mark.slow
def test_dequantized_cache_matches_direct_gguf_load(bundled_model):
    from transformers import AutoModelForCausalLM

    model, tokenizer, _ = bundled_model
    gguf = Path(resolve_reference("bundled").location)
    direct = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name).eval()
    ids = tokenizer("Write a haiku about rain.", return_tensors="pt")
    with torch.inference_mode():
        assert torch.equal(model(**ids).logits, direct(**ids).logits)


def test_auto_device_is_this_ranks_gpu_and_the_dtype_follows_the_gpu(monkeypatch):
    import torch

    from reflection_assets import devices
    from reflection_assets.model_store import pick_device, pick_dtype

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert pick_device("auto") == "cuda:0"
    monkeypatch.setenv("LOCAL_RANK", "3")  # under torchrun / accelerate: never plain "cuda" (GPU 0) for every rank
    assert pick_device(None) == "cuda:3" and pick_device("cpu") == "cpu"
    monkeypatch.setattr(devices, "cuda_bf16_supported", lambda: False)  # a V100 / T4
    assert pick_dtype(None, "cuda:3") == torch.float16 and pick_dtype("float32", "cuda:3") == torch.float32
    monkeypatch.setattr(devices, "cuda_bf16_supported", lambda: True)
    assert pick_dtype("auto", "cuda:0") == torch.bfloat16 and pick_dtype(None, "cpu") == torch.float32
