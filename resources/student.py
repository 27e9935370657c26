"""The student model as a Dagster resource: which weights, how to score, where to run.

Loaded once per process (steps of one run share it) and keyed by its settings, so a run that
scores several assets pays for the load once.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

if TYPE_CHECKING:
    from reflection_assets.scoring.scorer import ScoringConfig
    from reflection_assets.scoring.student import Student

TEMPLATES = ("auto", "alpaca", "vicuna", "chat", "plain")


@functools.lru_cache(maxsize=2)
def _load(ref: str, device: str, dtype: str, trust_remote_code: bool) -> "Student":
    from reflection_assets.scoring.student import Student
    from reflection_assets.model_store import load_model_and_tokenizer

    model, tokenizer, fingerprint = load_model_and_tokenizer(
        ref, dtype=dtype, device=device, trust_remote_code=trust_remote_code
    )
    return Student(model, tokenizer, fingerprint)


class StudentModel(dg.ConfigurableResource):
    """The model whose judgement selects the data (and that gets fine-tuned)."""

    model: str = Field(default="bundled", description="`bundled`, a .gguf file, a local directory or a HF id")
    device: str = "auto"
    dtype: str = "auto"
    template: str = Field(default="auto", description="auto | alpaca | vicuna | chat | plain")
    start_token: str = Field(default="bos", description="context of the unconditioned pass: bos | eos | header")
    max_length: int = 512
    batch_tokens: int = Field(default=0, description="token budget per batch (0: per-device default)")
    trust_remote_code: bool = False

    def load(self) -> "Student":
        return _load(self.model, self.device, self.dtype, self.trust_remote_code)

    def scoring_config(self) -> "ScoringConfig":
        from reflection_assets.scoring.scorer import ScoringConfig

        if self.template not in TEMPLATES:
            raise dg.Failure(f"student template must be one of {TEMPLATES}, not {self.template!r}")
        return ScoringConfig(
            template=None if self.template == "auto" else self.template,
            start_token=self.start_token,
            max_length=self.max_length,
            batch_tokens=self.batch_tokens or None,
        )
