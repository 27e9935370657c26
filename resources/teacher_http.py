"""The HTTP teacher as a Dagster resource: server, model, key and retry policy; the calls are
`reflection_assets.teacher.chat_completions`'s.

The API key is a secret: it comes from the environment (REFLECTION_TEACHER_API_KEY), is masked in
the resource's repr and scrubbed from every error text by the client.
"""

from __future__ import annotations

from typing import Optional

from pydantic import Field, PrivateAttr

from reflection_assets.documented import help_texts, mirrored
from reflection_assets.http_retries import RetryPolicy
from reflection_assets.teacher.chat_completions import MASK, ChatCompletionsTeacher
from resources.teacher import BackedTeacher


class OpenAICompatibleTeacher(BackedTeacher):
    """Chat completions over HTTP with bounded concurrency, timeouts and retries."""

    base_url: str = Field(description="Server base URL including /v1, e.g. http://127.0.0.1:8000/v1.")
    model: str = Field(description="Model name the server expects in requests.")
    api_key: Optional[str] = Field(
        default=None, repr=False, description="Bearer token (secret; optional for local servers)."
    )
    max_concurrency: int = mirrored(RetryPolicy, "max_concurrency")
    initial_concurrency: int = mirrored(RetryPolicy, "initial_concurrency")
    requests_per_minute: float = mirrored(RetryPolicy, "requests_per_minute")
    tokens_per_minute: float = mirrored(RetryPolicy, "tokens_per_minute")
    timeout_s: float = mirrored(RetryPolicy, "timeout_s")
    connect_timeout_s: float = mirrored(RetryPolicy, "connect_timeout_s")
    max_attempts: int = mirrored(RetryPolicy, "max_attempts")
    backoff_initial_s: float = mirrored(RetryPolicy, "backoff_initial_s")
    backoff_max_s: float = mirrored(RetryPolicy, "backoff_max_s")
    max_retry_after_s: float = mirrored(RetryPolicy, "max_retry_after_s")
    guided: bool = Field(
        default=False,
        description="Guided generation unless a run says otherwise: each marker is opened for the teacher and "
        "the server continues the assistant turn (vLLM's continue_final_message). For small teachers.",
    )

    _client: Optional[ChatCompletionsTeacher] = PrivateAttr(default=None)

    def __repr_args__(self):  # type: ignore[no-untyped-def]
        yield from super().__repr_args__()
        yield "api_key", MASK if self.api_key else None

    def policy(self) -> RetryPolicy:
        return RetryPolicy(**{name: getattr(self, name) for name in help_texts(RetryPolicy)})

    def backend(self) -> ChatCompletionsTeacher:
        """The client (made once: it remembers that the server's prefix continuation was checked)."""
        if self._client is None:
            self._client = ChatCompletionsTeacher(
                self.base_url, self.model, self.api_key, self.policy(), judge_stats=self.judge_stats
            )
        return self._client

    def model_name(self) -> str:
        return f"{self.model} at {self.base_url}"

    def cache_identity(self) -> dict:
        return {"backend": "openai", "model": self.model}

    @property
    def supports_guided(self) -> bool:
        return True  # whether the server can is checked before the first guided call

    @property
    def guided_by_default(self) -> bool:
        return self.guided
