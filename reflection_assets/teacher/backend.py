"""The teacher interface the runner and the estimator need, free of Dagster.

`resources.teacher.Teacher` makes it a Dagster resource; its implementations (HTTP, in-process,
scripted) live in `resources/` and are never imported from here.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

from reflection_assets.teacher.planning import estimate_prompt_tokens
from reflection_assets.teacher.types import Admit, ChatRequest, ChatResult, Message, OnResult


class TeacherError(RuntimeError):
    """A teacher could not be used at all (not one failed call: those are ChatResult errors)."""


class TeacherBackend(ABC):
    """What a teacher does: say who it is (for the cache key), complete requests, judge options."""

    @abstractmethod
    def cache_identity(self) -> dict:
        """Backend and model as they enter the llm_calls key; cheap (never loads a model)."""

    @property
    def supports_guided(self) -> bool:
        """Whether `complete` can run a GuidePlan (continue an assistant prefix)."""
        return False

    @property
    def guided_by_default(self) -> bool:
        """Whether a run that does not say runs guided (the deployment's choice)."""
        return self.supports_guided

    @abstractmethod
    def complete(
        self, requests: Sequence[ChatRequest], admit: Admit | None = None, on_result: OnResult | None = None
    ) -> list[ChatResult]:
        """Run every request; one result each, in order. Failures are results, not exceptions.

        `admit` is asked just before a request would start (a False skips it); `on_result` is told
        as each call completes, so the caller can save results while the rest are running; it may
        be called from several threads at once, and a request waits for its `on_result` to return.
        """

    @abstractmethod
    def choose(self, messages: Sequence[Message], options: Sequence[str]) -> list[float]:
        """Probability of each option as the assistant's reply (sums to 1), for a pairwise judge."""

    def choose_many(self, asks: Sequence[tuple[Sequence[Message], Sequence[str]]]) -> list[list[float]]:
        """`choose` for many (messages, options) questions; backends that can batch them override this."""
        return [list(self.choose(messages, options)) for messages, options in asks]

    def estimate_prompt_tokens(self, request: ChatRequest) -> int:
        """Prompt tokens of a request, estimated without a tokenizer unless a backend has one."""
        return estimate_prompt_tokens(request)

    def flow_stats(self) -> dict[str, int | float]:
        """How the last `complete` was paced (a server teacher's in-flight limit, push-backs, rate-limit waits)."""
        return {}


def normalise(scores: Mapping[int, float], n: int) -> list[float]:
    """Softmax of log-probabilities over options; options without a score get 0."""
    if not scores:
        return [1.0 / n] * n
    top = max(scores.values())
    weights = [math.exp(scores[i] - top) if i in scores else 0.0 for i in range(n)]
    total = sum(weights)
    return [w / total for w in weights]
