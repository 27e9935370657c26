"""Device facts in one place: default dtype, attention kernel, generation batch budget, out-of-memory handling.

Pure (no Dagster, no `resources`): the model store, the trainer and the engines ask here, so a
fact such as "fp16 where the GPU has no bf16" is decided once. Everything reads the device it is
given; `torch.cuda` is only asked about what a device string cannot say (bf16 support, free memory).
torch is imported at use, not at import: resources import this module, and loading Dagster
definitions should not load torch.
"""

from __future__ import annotations

import gc
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

CPU_GENERATION_TOKENS = 32768  # rows x (prompt + new tokens) per generation batch on CPU (small batches stay in cache)
KV_RESERVE_FRACTION = 0.3  # of free memory kept for activations, logits, the allocator's fragments
MIN_GENERATION_TOKENS = 1024  # a smaller budget than this would only trade OOMs for many tiny batches
MAX_GENERATION_TOKENS = 1 << 20  # past this more rows add latency, not throughput
HALF_DTYPES = frozenset({"bfloat16", "float16"})


def is_cuda(device: torch.device | str) -> bool:
    import torch

    return torch.device(device).type == "cuda"


def cuda_bf16_supported() -> bool:
    """Whether the current GPU computes in bf16 natively (Ampere and later).

    `including_emulation=False`: torch otherwise says yes on a V100 or T4, where bf16 is emulated
    and far slower than fp16.
    """
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)


def default_dtype(device: torch.device | str) -> str:
    """bf16 on a GPU that has it, fp16 on one without (V100, T4), fp32 on CPU (exact; CPUs are slow in half)."""
    if not is_cuda(device):
        return "float32"
    return "bfloat16" if cuda_bf16_supported() else "float16"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX tiles, as oneDNN uses them).

    Without either, torch emulates bf16 through fp32 conversions and runs slower than fp32 (one machine
    measured 0.4x); with them, about twice as fast (issue 22).
    """
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    try:
        return any(getattr(torch.cpu, name, lambda: False)() for name in probes)
    except RuntimeError:  # a build without the probes' backend
        return False


def generation_dtype(device: torch.device | str) -> str:
    """The default dtype for generating (the teacher, the evaluation's models): as `default_dtype` on a
    GPU; on a CPU bf16 where it is native, else fp32. Scoring (IFD, training) keeps `default_dtype`."""
    if is_cuda(device):
        return default_dtype(device)
    return "bfloat16" if cpu_has_native_bf16() else "float32"


def generation_dtype_reason(device: torch.device | str) -> str:
    """Why `generation_dtype` chose what it did, for run metadata."""
    if is_cuda(device):
        return "GPU default"
    return "CPU with native bf16 (AVX512-BF16/AMX)" if cpu_has_native_bf16() else "CPU without native bf16"


def dtype_name(dtype: torch.dtype | str | None) -> str:
    """'bfloat16' for torch.bfloat16, 'torch.bfloat16' or 'bfloat16' alike."""
    return str(dtype).removeprefix("torch.")


def attention_implementation(device: torch.device | str, dtype: torch.dtype | str | None) -> str:
    """flash_attention_2 on CUDA in bf16/fp16 when `flash_attn` is installed, else PyTorch's SDPA.

    FlashAttention runs only in half precision (fp32 fails or falls back with a warning) and only on CUDA.
    """
    if is_cuda(device) and dtype_name(dtype) in HALF_DTYPES and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def kv_bytes_per_token(config: Any, dtype: torch.dtype) -> int | None:
    """Bytes of key/value cache one token costs across all layers; None when the config does not say."""
    import torch

    if hasattr(config, "get_text_config"):  # multimodal configs keep the decoder's facts in a sub-config
        config = config.get_text_config()
    layers = getattr(config, "num_hidden_layers", None)
    heads = getattr(config, "num_attention_heads", None)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None)
    if not head_dim and heads and getattr(config, "hidden_size", None):
        head_dim = config.hidden_size // heads
    if not (layers and kv_heads and head_dim):
        return None
    element = torch.empty((), dtype=dtype).element_size()
    return 2 * int(layers) * int(kv_heads) * int(head_dim) * element  # 2: a key and a value


def token_budget(
    free_bytes: int,
    kv_bytes: int,
    *,
    reserve_fraction: float = KV_RESERVE_FRACTION,
    minimum: int = MIN_GENERATION_TOKENS,
    maximum: int = MAX_GENERATION_TOKENS,
) -> int:
    """Tokens whose key/value cache fits in `free_bytes` after keeping `reserve_fraction` of it back.

    The cache is what grows with the batch; activations and logits (one row each: the engine keeps
    only the last position's logits) are transient and come out of the reserve.
    """
    if not 0 <= reserve_fraction < 1:
        raise ValueError(f"reserve_fraction must be in [0, 1), got {reserve_fraction}")
    if kv_bytes <= 0:
        raise ValueError(f"kv_bytes must be positive, got {kv_bytes}")
    fits = int(max(free_bytes, 0) * (1 - reserve_fraction)) // kv_bytes
    return max(minimum, min(maximum, fits))


def free_device_bytes(device: torch.device | str) -> int:
    """Free memory on a CUDA device, counting what PyTorch's allocator holds but does not use."""
    import torch

    free, _total = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


def generation_token_budget(
    model: Any,
    device: torch.device | str,
    *,
    reserve_fraction: float = KV_RESERVE_FRACTION,
    fallback: int = CPU_GENERATION_TOKENS,
) -> int:
    """Rows x (prompt + new tokens) per generation batch for `model` on `device`.

    On CUDA: from the free memory and what one token's key/value cache costs, so a small model
    gets large batches and a large one does not run out of memory. On CPU (or a model whose
    config does not give the cache's shape): `fallback`.
    """
    import torch

    if not is_cuda(device) or not torch.cuda.is_available():
        return fallback
    dtype = getattr(model, "dtype", None) or next(model.parameters()).dtype
    per_token = kv_bytes_per_token(getattr(model, "config", None), dtype)
    if per_token is None:
        return fallback
    return token_budget(free_device_bytes(device), per_token, reserve_fraction=reserve_fraction)


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's OutOfMemoryError, or a RuntimeError that says so (older kernels and backends raise that)."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_cuda_memory() -> None:
    """Collect unreachable tensors, then give the allocator's cached blocks back, before a retry.

    Call it after the `except` block: inside it, the exception's traceback still holds the failed
    forward's frames and so its activations.
    """
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
