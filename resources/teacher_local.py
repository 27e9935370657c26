"""The in-process teacher as a Dagster resource: which model, where, how; the work is `LocalTeacher`'s.

Defaults to the bundled SmolLM2-135M-Instruct (through reflection_assets.model_store, which de-quantizes
the GGUF once); any Hugging Face id or local directory works. Guided generation is always
available here because the backend controls the assistant turn itself. Batching, the engine,
splitting a failing batch and the judge's log-probabilities live in `reflection_assets.teacher.local`.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import Field, PrivateAttr

from reflection_assets.teacher.local import GenerationPath, LocalTeacher
from reflection_assets.teacher.types import ChatRequest
from resources.teacher import BackedTeacher


class TransformersTeacher(BackedTeacher):
    """A causal LM loaded in this process (once per resource instance, on first use)."""

    model_ref: str = Field(default="bundled", description="'bundled', a .gguf path, a model directory or a hub id.")
    device: Optional[str] = Field(default=None, description="'cpu', 'cuda', 'cuda:1'...; default CUDA when present.")
    dtype: Optional[str] = Field(
        default=None,
        description="torch dtype name (REFLECTION_TEACHER_DTYPE); default bf16 on a GPU that has it (else fp16), "
        "on a CPU bf16 where it is native (AVX512-BF16/AMX), else fp32.",
    )
    generation: GenerationPath = Field(
        default="engine",
        description="'engine': cache reuse across guided steps, shared prefix, token-budget batches; "
        "'generate': one model.generate per batch and guided step (the earlier path, for comparison).",
    )
    batch_tokens: Optional[int] = Field(
        default=None, description="Engine batch budget, rows x (prompt + new tokens); default by device."
    )
    continuous: bool = Field(
        default=True,
        description="Engine: one running batch per stage, rows that finish leave it and waiting rows take their "
        "places (continuous batching); False runs planned batches one after another (the earlier engine path).",
    )
    batch_size: int = Field(default=8, description="Prompts per generate() call (generation='generate').")
    trust_remote_code: bool = Field(default=False, description="Allow model code from the model's repository.")
    num_threads: Optional[int] = Field(
        default=None,
        description="torch CPU threads, process-wide (None: OMP_NUM_THREADS, else the cores this process may "
        "use). 1 avoids OpenMP oversubscription when other processes share the cores.",
    )

    _local: Optional[LocalTeacher] = PrivateAttr(default=None)
    _identity: Optional[dict] = PrivateAttr(default=None)

    @classmethod
    def from_loaded(
        cls, model: Any, tokenizer: Any, name: str, batch_size: int = 8, **fields: Any
    ) -> TransformersTeacher:
        """Wrap a model already in memory (tests, benchmarks, notebooks); `fields` set other options."""
        teacher = cls(model_ref=name, batch_size=batch_size, **fields)
        teacher._local = teacher._wrap(model.eval(), tokenizer)
        teacher._identity = {
            "backend": "transformers",
            "model": name,
            "dtype": str(model.dtype),
            "device": model.device.type,
        }
        return teacher

    def _wrap(self, model: Any, tokenizer: Any) -> LocalTeacher:
        return LocalTeacher(
            model,
            tokenizer,
            generation=self.generation,
            batch_size=self.batch_size,
            batch_tokens=self.batch_tokens,
            continuous=self.continuous,
            num_threads=self.num_threads,
            judge_stats=self.judge_stats,
        )

    def backend(self) -> LocalTeacher:
        """The loaded teacher (the model is loaded on the first call, then reused)."""
        if self._local is None:
            from reflection_assets.model_store import load_model_and_tokenizer

            if self.num_threads:
                import torch

                torch.set_num_threads(self.num_threads)

            model, tokenizer, _ = load_model_and_tokenizer(
                self.model_ref,
                dtype=self.dtype,
                device=self.device,
                trust_remote_code=self.trust_remote_code,
                generation=True,
            )
            self._local = self._wrap(model, tokenizer)
        return self._local

    def load(self) -> tuple[Any, Any]:
        """The model and tokenizer, loaded once."""
        return self.backend().load()

    def engine(self) -> Any:
        """The generation engine over the loaded model (benchmarks read its stats)."""
        return self.backend().engine()

    def model_name(self) -> str:
        return f"in-process {self.model_ref}"

    def dtype_choice(self) -> str:
        """e.g. 'float32 (CPU without native bf16)' or 'bfloat16 (set: dtype)'."""
        from reflection_assets import model_store
        from reflection_assets.devices import generation_dtype_reason

        dtype = self.cache_identity()["dtype"].removeprefix("torch.")
        if self.dtype and self.dtype != "auto":
            return f"{dtype} (set: dtype / REFLECTION_TEACHER_DTYPE)"
        device = model_store.pick_device(self.device)
        if dtype != str(model_store.pick_dtype(None, device, generation=True)).removeprefix("torch."):
            return f"{dtype} (as the model was loaded)"
        return f"{dtype} (default: {generation_dtype_reason(device)})"

    def cache_identity(self) -> dict:
        """Weights fingerprint plus resolved dtype and device kind, without loading the model."""
        if self._identity is None:
            from reflection_assets import model_store

            source = model_store.resolve_reference(self.model_ref)
            if source.kind == "gguf":
                from pathlib import Path

                model = f"gguf:{model_store.file_sha256(Path(source.location))[:16]}"
            elif source.kind == "dir":
                from pathlib import Path

                model = f"dir:{model_store.dir_fingerprint(Path(source.location))[:16]}"
            else:
                model = f"hub:{source.location}"
            device = model_store.pick_device(self.device)
            dtype = str(model_store.pick_dtype(self.dtype, device, generation=True))
            self._identity = {"backend": "transformers", "model": model, "dtype": dtype, "device": device.split(":")[0]}
        return self._identity

    @property
    def supports_guided(self) -> bool:
        return True

    # -- the Teacher interface, answered by the loaded LocalTeacher -----------------------------

    def estimate_prompt_tokens(self, request: ChatRequest) -> int:
        if self._local is None:  # no tokenizer until the model is loaded: estimate without one
            return super().estimate_prompt_tokens(request)
        return self._local.estimate_prompt_tokens(request)
