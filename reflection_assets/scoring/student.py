"""The student model as the scorer sees it: model, tokenizer, fingerprint and one loss engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reflection_assets.scoring.engine import LossEngine


@dataclass
class Student:
    """A loaded student. `fingerprint` identifies the weights (cache key); the engine is reused."""

    model: Any
    tokenizer: Any
    fingerprint: str
    _engine: LossEngine | None = field(default=None, repr=False)

    @property
    def engine(self) -> LossEngine:
        if self._engine is None:
            self._engine = LossEngine(self.model)
        return self._engine

    @property
    def dtype_name(self) -> str:
        return str(self.engine.dtype).removeprefix("torch.")

    @property
    def device_kind(self) -> str:
        return self.engine.device.type


def load_student(
    ref: str = "bundled", device: str | None = None, dtype: str | None = None, trust_remote_code: bool = False
) -> Student:
    """The one student loader (CLI and resource): through the model store, fp32 on CPU, bf16 on CUDA by default."""
    from reflection_assets.model_store import load_model_and_tokenizer

    model, tokenizer, fingerprint = load_model_and_tokenizer(
        ref, dtype=dtype, device=device, trust_remote_code=trust_remote_code
    )
    return Student(model, tokenizer, fingerprint)
