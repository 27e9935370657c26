"""Device facts, with the GPU's answers simulated (torch.cuda patched): no test here needs a GPU."""

from __future__ import annotations

import gc
import importlib.util
from types import SimpleNamespace

import pytest
import torch

from reflection_assets import devices

GIB = 1 << 30


@pytest.fixture()
def gpu(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """A simulated GPU: available, bf16 as `state.bf16` says, `state.free` bytes free, allocator calls recorded."""
    state = SimpleNamespace(bf16=True, free=10 * GIB, reserved=0, allocated=0, emptied=0, emulation=[])

    def bf16_supported(including_emulation: bool = True) -> bool:
        state.emulation.append(including_emulation)
        return state.bf16 or including_emulation  # what torch says on a V100: emulated bf16 counts

    def emptied() -> None:
        state.emptied += 1

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", bf16_supported)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (state.free, 80 * GIB))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: state.reserved)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: state.allocated)
    monkeypatch.setattr(torch.cuda, "empty_cache", emptied)
    return state


def test_default_dtype_per_device(gpu: SimpleNamespace) -> None:
    assert devices.default_dtype("cpu") == "float32"
    assert devices.default_dtype(torch.device("cpu")) == "float32"
    assert devices.default_dtype("cuda") == devices.default_dtype("cuda:1") == "bfloat16"
    gpu.bf16 = False  # a V100 or T4: torch reports emulated bf16 as supported unless asked not to
    assert devices.default_dtype("cuda") == "float16"
    assert gpu.emulation and not any(gpu.emulation)


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "want"),
    [(True, False, "bfloat16"), (False, True, "bfloat16"), (False, False, "float32")],
)
def test_generation_dtype_on_a_cpu_follows_its_native_bf16(
    monkeypatch: pytest.MonkeyPatch, avx512_bf16: bool, amx: bool, want: str
) -> None:
    """Generation takes bf16 only where the CPU computes it natively; scoring keeps fp32 either way."""
    from reflection_assets.model_store import pick_dtype

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert devices.generation_dtype("cpu") == want
    assert ("without" in devices.generation_dtype_reason("cpu")) == (want == "float32")
    assert devices.default_dtype("cpu") == "float32"
    assert pick_dtype(None, "cpu", generation=True) == getattr(torch, want)
    assert pick_dtype("auto", "cpu", generation=True) == getattr(torch, want)
    assert pick_dtype(None, "cpu") == torch.float32  # scoring, training
    assert pick_dtype("float32", "cpu", generation=True) == torch.float32  # REFLECTION_TEACHER_DTYPE wins


def test_generation_dtype_on_a_gpu_is_the_gpu_default(gpu: SimpleNamespace) -> None:
    assert devices.generation_dtype("cuda") == devices.default_dtype("cuda") == "bfloat16"
    assert devices.generation_dtype_reason("cuda") == "GPU default"


def test_no_cuda_means_no_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not devices.cuda_bf16_supported()


@pytest.mark.parametrize("has_flash", [True, False])
def test_attention_implementation(monkeypatch: pytest.MonkeyPatch, has_flash: bool) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args):  # type: ignore[no-untyped-def]
        if name == "flash_attn":
            return SimpleNamespace(name=name) if has_flash else None
        return real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    flash = "flash_attention_2" if has_flash else "sdpa"
    for dtype in (torch.bfloat16, torch.float16, "bfloat16", "float16", "torch.float16"):
        assert devices.attention_implementation("cuda", dtype) == flash
        assert devices.attention_implementation(torch.device("cuda:0"), dtype) == flash
        assert devices.attention_implementation("cpu", dtype) == "sdpa"
    for dtype in (torch.float32, "float32", None):  # FlashAttention has no fp32 kernel
        assert devices.attention_implementation("cuda", dtype) == "sdpa"


def llama_config(**changes):  # type: ignore[no-untyped-def]
    from transformers import LlamaConfig

    facts = dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8)
    return LlamaConfig(**{**facts, **changes})


def test_kv_bytes_per_token_from_the_config() -> None:
    # Llama-3-8B shape: 32 layers x 8 kv heads x 128 dims x (key + value) x 2 bytes = 128 KiB a token.
    assert devices.kv_bytes_per_token(llama_config(), torch.bfloat16) == 131072
    assert devices.kv_bytes_per_token(llama_config(), torch.float32) == 262144
    assert devices.kv_bytes_per_token(llama_config(num_key_value_heads=None), torch.bfloat16) == 4 * 131072
    assert devices.kv_bytes_per_token(llama_config(head_dim=64), torch.bfloat16) == 65536  # explicit head_dim wins
    assert devices.kv_bytes_per_token(SimpleNamespace(hidden_size=64), torch.bfloat16) is None


def test_kv_bytes_per_token_of_gpt2_through_its_attribute_map() -> None:
    from transformers import GPT2Config

    config = GPT2Config(n_embd=768, n_layer=12, n_head=12)
    assert devices.kv_bytes_per_token(config, torch.float16) == 2 * 12 * 12 * 64 * 2


def test_token_budget_arithmetic() -> None:
    # 10 GiB free, 30% kept back: 7 GiB of cache at 128 KiB a token.
    assert devices.token_budget(10 * GIB, 131072) == 7 * GIB // 131072 == 57344
    assert devices.token_budget(10 * GIB, 131072, reserve_fraction=0.5) == 40960
    assert devices.token_budget(10 * GIB, 131072, reserve_fraction=0.0) == 81920
    assert devices.token_budget(10 * 1024 * 1024, 131072) == devices.MIN_GENERATION_TOKENS  # nearly full
    assert devices.token_budget(-5, 131072) == devices.MIN_GENERATION_TOKENS
    assert devices.token_budget(140 * GIB, 1024) == devices.MAX_GENERATION_TOKENS  # a tiny model on an H200
    assert devices.token_budget(GIB, 1024, minimum=10, maximum=100) == 100
    with pytest.raises(ValueError):
        devices.token_budget(GIB, 1024, reserve_fraction=1.0)
    with pytest.raises(ValueError):
        devices.token_budget(GIB, 0)


def test_generation_token_budget_follows_free_memory_and_the_model(gpu: SimpleNamespace) -> None:
    from transformers import LlamaForCausalLM

    with torch.device("meta"):  # the shape of an 8B model without its weights
        model = LlamaForCausalLM(llama_config(vocab_size=128)).to(torch.bfloat16)
    assert devices.generation_token_budget(model, "cuda") == 57344
    gpu.reserved, gpu.allocated = 3 * GIB, 1 * GIB  # 2 GiB cached by the allocator count as free
    assert devices.generation_token_budget(model, "cuda:0") == devices.token_budget(12 * GIB, 131072)
    assert devices.generation_token_budget(model, "cuda", reserve_fraction=0.5) == devices.token_budget(
        12 * GIB, 131072, reserve_fraction=0.5
    )
    assert devices.generation_token_budget(model, "cpu") == devices.CPU_GENERATION_TOKENS
    assert devices.generation_token_budget(model, "cpu", fallback=77) == 77
    gpu.free, gpu.reserved, gpu.allocated = 100 * GIB, 0, 0
    fp32 = devices.generation_token_budget(model.to(torch.float32), "cuda")
    assert fp32 == devices.token_budget(100 * GIB, 262144) == 100 * GIB * 7 // 10 // 262144  # fp32: half the tokens


def test_generation_token_budget_without_cache_facts_or_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    model = torch.nn.Linear(2, 2)  # no config: nothing to size a cache from
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert devices.generation_token_budget(model, "cuda", fallback=123) == 123
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.generation_token_budget(model, "cuda") == devices.CPU_GENERATION_TOKENS


def test_is_out_of_memory() -> None:
    assert devices.is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert devices.is_out_of_memory(torch.cuda.OutOfMemoryError("x"))
    assert devices.is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert devices.is_out_of_memory(RuntimeError("MPS backend Out Of Memory"))
    assert not devices.is_out_of_memory(RuntimeError("shape mismatch"))
    assert not devices.is_out_of_memory(IndexError("index out of range in self"))
    assert not devices.is_out_of_memory(ValueError("out of memory"))  # only RuntimeErrors speak for torch


def test_free_cuda_memory_collects_then_empties_the_cache(
    gpu: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    order: list[str] = []
    real_collect = gc.collect
    monkeypatch.setattr(gc, "collect", lambda *a: order.append("collect") or real_collect(*a))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: order.append("empty_cache"))
    devices.free_cuda_memory()
    assert order == ["collect", "empty_cache"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    order.clear()
    devices.free_cuda_memory()
    assert order == ["collect"]


def test_importing_devices_does_not_load_torch() -> None:
    """Resources import it at the top: loading Dagster definitions must stay free of torch."""
    import subprocess
    import sys

    code = "import sys, reflection_assets.devices; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
