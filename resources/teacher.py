"""The Teacher resource: the LLM that writes reflections, behind one small interface.

Two real backends implement it: an OpenAI-compatible HTTP client (`resources.teacher_http`) and an
in-process transformers model (`resources.teacher_local`). `teacher_from_env()` picks one the way a
deployment is configured: a base URL means a server, no base URL means the bundled local model.
"""

from __future__ import annotations

import math
import os
from typing import Mapping, Optional, Sequence

import dagster as dg
from pydantic import Field, PrivateAttr

from reflection_assets.teacher.stats import JudgeStats
from reflection_assets.teacher.types import Admit, ChatRequest, ChatResult, Message, OnResult

ENV_BASE_URL = "REFLECTION_TEACHER_BASE_URL"
ENV_MODEL = "REFLECTION_TEACHER_MODEL"
ENV_API_KEY = "REFLECTION_TEACHER_API_KEY"


class TeacherError(RuntimeError):
    """A teacher could not be used at all (not one failed call: those are ChatResult errors)."""


class Teacher(dg.ConfigurableResource):
    """Abstract teacher. Subclasses implement identity, complete and choose.

    Sampling here is the deployment's; a run's launchpad config may set its own temperature.
    """

    temperature: float = Field(default=0.0, description="Sampling temperature unless a run sets one (0: greedy).")
    top_p: float = Field(default=1.0, description="Nucleus sampling mass (with a temperature above 0).")
    seed: Optional[int] = Field(default=None, description="Sampling seed (None: the backend's own).")

    _judge_stats: JudgeStats = PrivateAttr(default_factory=JudgeStats)

    @property
    def judge_stats(self) -> JudgeStats:
        """How this instance's `choose` calls were read (log-probabilities vs text fallbacks)."""
        return self._judge_stats

    def cache_identity(self) -> dict:
        """Backend and model as they enter the llm_calls key; cheap (never loads a model)."""
        raise NotImplementedError

    @property
    def supports_guided(self) -> bool:
        """Whether `complete` can run a GuidePlan (continue an assistant prefix)."""
        return False

    @property
    def guided_by_default(self) -> bool:
        """Whether a run that does not say runs guided (the deployment's choice)."""
        return self.supports_guided

    def complete(
        self,
        requests: Sequence[ChatRequest],
        admit: Admit | None = None,
        on_result: OnResult | None = None,
    ) -> list[ChatResult]:
        """Run every request; one result each, in order. Failures are results, not exceptions.

        `admit` is asked just before a request would start (a False skips it); `on_result` is told
        as each call completes, so the caller can save results while the rest are running.
        """
        raise NotImplementedError

    def choose(self, messages: Sequence[Message], options: Sequence[str]) -> list[float]:
        """Probability of each option as the assistant's reply (sums to 1), for a pairwise judge."""
        raise NotImplementedError

    def estimate_prompt_tokens(self, request: ChatRequest) -> int:
        """Prompt tokens of a request, estimated without a tokenizer unless a backend has one."""
        from reflection_assets.teacher.planning import estimate_prompt_tokens

        return estimate_prompt_tokens(request)


def normalise(scores: Mapping[int, float], n: int) -> list[float]:
    """Softmax of log-probabilities over options; options without a score get 0."""
    if not scores:
        return [1.0 / n] * n
    top = max(scores.values())
    weights = [math.exp(scores[i] - top) if i in scores else 0.0 for i in range(n)]
    total = sum(weights)
    return [w / total for w in weights]


def teacher_from_env(env: Mapping[str, str] | None = None) -> Teacher:
    """The teacher a deployment configured: HTTP when a base URL is set, else in-process.

    Reads REFLECTION_TEACHER_BASE_URL, REFLECTION_TEACHER_MODEL and REFLECTION_TEACHER_API_KEY
    (optional: local servers need none). Nothing is loaded or contacted here.
    """
    env = os.environ if env is None else env
    base_url = (env.get(ENV_BASE_URL) or "").strip()
    model = (env.get(ENV_MODEL) or "").strip()
    if base_url:
        from resources.teacher_http import OpenAICompatibleTeacher

        if not model:
            raise TeacherError(f"{ENV_BASE_URL} is set, so {ENV_MODEL} must name the served model")
        return OpenAICompatibleTeacher(base_url=base_url, model=model, api_key=env.get(ENV_API_KEY) or None)
    from resources.teacher_local import TransformersTeacher

    return TransformersTeacher(model_ref=model or "bundled")
