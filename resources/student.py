"""The student model as a Dagster resource: which weights, how to score, where to run.

Loaded once per process (steps of one run share it) and keyed by its settings, so a run that
scores several assets pays for the load once. With `base_url` set the student is a vLLM server
(`reflection_assets.served`): only the tokenizer of `model` is loaded here.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Optional

import dagster as dg
from pydantic import Field

from reflection_assets.documented import help_text, mirrored
from reflection_assets.http_retries import RetryPolicy
from reflection_assets.scoring.settings import ScoringConfig
from reflection_assets.scoring.templates import AUTO, StartToken, TemplateSetting
from reflection_assets.served.client import STUDENT_CONCURRENCY

if TYPE_CHECKING:
    from reflection_assets.scoring.student import Student
    from reflection_assets.served.client import ServedStudent

MASK = "***"


@functools.lru_cache(maxsize=2)
def _load(ref: str, device: str, dtype: str, trust_remote_code: bool, served: tuple | None) -> Student:
    from reflection_assets.scoring.student import load_student
    from reflection_assets.served.client import ServedStudent
    from reflection_assets.served.scoring import served_student

    if served:
        server = ServedStudent(*served[:4], logprob_concurrency=served[4])
        return served_student(ref, server, trust_remote_code=trust_remote_code)
    return load_student(ref, device=device, dtype=dtype, trust_remote_code=trust_remote_code)


class StudentModel(dg.ConfigurableResource):
    """The model whose judgement selects the data (and that gets fine-tuned)."""

    model: str = Field(
        default="bundled",
        description="`bundled`, a .gguf file, a local directory or a HF id (with base_url: the served weights' "
        "tokenizer)",
    )
    device: str = "auto"
    dtype: str = "auto"
    # The scoring knobs are ScoringConfig's (defaults and meaning); `auto` and 0 stand for its unset.
    template: TemplateSetting = mirrored(
        ScoringConfig, "template", default=AUTO, description=help_text(ScoringConfig, "template") + "; auto: unset"
    )
    start_token: StartToken = mirrored(ScoringConfig, "start_token")
    max_length: int = mirrored(ScoringConfig, "max_length")
    batch_tokens: int = mirrored(
        ScoringConfig, "batch_tokens", default=0, description=help_text(ScoringConfig, "batch_tokens") + "; 0: unset"
    )
    trust_remote_code: bool = False
    base_url: str = Field(
        default="", description="a vLLM server's /v1 URL: score and evaluate there ('' = in this process)"
    )
    served_model: str = Field(default="", description="the student's name on that server")
    api_key: Optional[str] = Field(default=None, repr=False, description="bearer token (secret; optional)")
    max_concurrency: int = mirrored(
        RetryPolicy, "max_concurrency", default=STUDENT_CONCURRENCY,
        description="requests in flight at once (a vLLM server batches them; its scoring and evaluation send "
        "this many at a time)",
    )  # fmt: skip
    timeout_s: float = mirrored(RetryPolicy, "timeout_s")
    max_attempts: int = mirrored(RetryPolicy, "max_attempts")
    logprob_concurrency: int = Field(
        default=1,
        description="prompt log-probability requests in flight (1: safe on a vLLM 0.32 server with --enable-lora, "
        "which crashes on batched prompt_logprobs; raise it for a server without LoRA)",
    )

    def __repr_args__(self):  # type: ignore[no-untyped-def]
        yield from super().__repr_args__()
        yield "api_key", MASK if self.api_key else None

    @property
    def is_served(self) -> bool:
        return bool(self.base_url)

    def policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_concurrency=self.max_concurrency,
            initial_concurrency=self.max_concurrency,
            timeout_s=self.timeout_s,
            max_attempts=self.max_attempts,
        )

    def served(self) -> ServedStudent | None:
        from reflection_assets.served.client import ServedModelError, ServedStudent

        if not self.base_url:
            return None
        if not self.served_model:
            raise ServedModelError("the student's base_url is set, so served_model must name the served model")
        return ServedStudent(
            self.base_url, self.served_model, self.api_key, self.policy(), logprob_concurrency=self.logprob_concurrency
        )

    def load(self) -> Student:
        server = self.served()
        key = None
        if server is not None:
            key = (server.base_url, server.model, server.api_key, server.policy, server.logprob_concurrency)
        return _load(self.model, self.device, self.dtype, self.trust_remote_code, key)

    def scoring_config(self) -> ScoringConfig:
        return ScoringConfig(
            template=None if self.template == AUTO else self.template,
            start_token=self.start_token,
            max_length=self.max_length,
            batch_tokens=self.batch_tokens or None,
        )
