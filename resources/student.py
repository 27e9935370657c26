"""The student model as a Dagster resource: which weights, how to score, where to run.

Loaded once per process (steps of one run share it) and keyed by its settings, so a run that
scores several assets pays for the load once.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

from reflection_assets.scoring.templates import AUTO, StartToken, TemplateSetting

if TYPE_CHECKING:
    from reflection_assets.scoring.scorer import ScoringConfig
    from reflection_assets.scoring.student import Student


@functools.lru_cache(maxsize=2)
def _load(ref: str, device: str, dtype: str, trust_remote_code: bool) -> Student:
    from reflection_assets.scoring.student import load_student

    return load_student(ref, device=device, dtype=dtype, trust_remote_code=trust_remote_code)


class StudentModel(dg.ConfigurableResource):
    """The model whose judgement selects the data (and that gets fine-tuned)."""

    model: str = Field(default="bundled", description="`bundled`, a .gguf file, a local directory or a HF id")
    device: str = "auto"
    dtype: str = "auto"
    template: TemplateSetting = Field(
        default=AUTO, description="auto: chat when the student has a chat template, else alpaca"
    )
    start_token: StartToken = Field(default="bos", description="context of the unconditioned pass")
    max_length: int = 512
    batch_tokens: int = Field(default=0, description="token budget per batch (0: per-device default)")
    trust_remote_code: bool = False

    def load(self) -> Student:
        return _load(self.model, self.device, self.dtype, self.trust_remote_code)

    def scoring_config(self) -> ScoringConfig:
        from reflection_assets.scoring.scorer import ScoringConfig

        return ScoringConfig(
            template=None if self.template == AUTO else self.template,
            start_token=self.start_token,
            max_length=self.max_length,
            batch_tokens=self.batch_tokens or None,
        )
