"""The student model as the scorer sees it: tokenizer, fingerprint and one loss engine.

The engine runs the model in this process (`LossEngine`) or asks a vLLM server for prompt
log-probabilities (`ServedLossEngine`, built by `reflection_assets.served.scoring.served_student`);
both score the same token sequences.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from reflection_assets.scoring.sequences import ProgressFn, Seq, SeqLoss


class Engine(Protocol):
    dtype_name: str
    device_kind: str
    tokens_processed: int

    def run(
        self, seqs: Sequence[Seq], batch_tokens: int | None = None, progress: ProgressFn | None = None
    ) -> Iterator[dict[Seq, SeqLoss]]: ...


@dataclass
class Student:
    """A loaded student. `fingerprint` identifies the weights (cache key); the engine is reused.

    `model` is None for a served student (the server holds the weights).
    """

    model: Any
    tokenizer: Any
    fingerprint: str
    _engine: Engine | None = field(default=None, repr=False)
    backend: str = "in-process"  # what the console names: "in-process (cpu, float32)" or the server

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from reflection_assets.scoring.engine import LossEngine

            self._engine = LossEngine(self.model)
        return self._engine

    @property
    def dtype_name(self) -> str:
        return self.engine.dtype_name

    @property
    def device_kind(self) -> str:
        return self.engine.device_kind

    def describe(self) -> str:
        if self.model is None:
            return self.backend
        return f"in-process ({self.device_kind}, {self.dtype_name})"


def load_student(
    ref: str = "bundled", device: str | None = None, dtype: str | None = None, trust_remote_code: bool = False
) -> Student:
    """The one in-process student loader (CLI and resource): through the model store, fp32 on CPU, bf16 on
    CUDA by default. A student a vLLM server scores is `reflection_assets.served.scoring.served_student`."""
    from reflection_assets.model_store import load_model_and_tokenizer

    model, tokenizer, fingerprint = load_model_and_tokenizer(
        ref, dtype=dtype, device=device, trust_remote_code=trust_remote_code
    )
    return Student(model, tokenizer, fingerprint)
