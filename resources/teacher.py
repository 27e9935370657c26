"""The Teacher resource: the LLM that writes reflections, behind one small interface.

Implementations: an OpenAI-compatible HTTP client (`resources.teacher_http`), an in-process
transformers model (`resources.teacher_local`) and a scripted one answering from canned replies
(`resources.teacher_scripted`, for tests). `reflection_assets.defs.deployment.build_teacher` picks
the one a deployment configured; this base never imports its subclasses.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Optional

import dagster as dg
from pydantic import Field, PrivateAttr

from reflection_assets.teacher.backend import TeacherBackend
from reflection_assets.teacher.chat_completions import ChatCompletionsTeacher
from reflection_assets.teacher.local import LocalTeacher
from reflection_assets.teacher.stats import JudgeStats
from reflection_assets.teacher.types import Admit, ChatRequest, ChatResult, Message, OnResult


class Teacher(dg.ConfigurableResource, TeacherBackend, ABC):
    """Abstract teacher resource: subclasses implement cache_identity, complete and choose.

    Sampling here is the deployment's; a run's launchpad config may set its own temperature.
    """

    temperature: float = Field(default=0.0, description="Sampling temperature unless a run sets one (0: greedy).")
    top_p: float = Field(default=1.0, description="Nucleus sampling mass (with a temperature above 0).")
    seed: Optional[int] = Field(default=None, description="Sampling seed (None: the backend's own).")

    _judge_stats: JudgeStats = PrivateAttr(default_factory=JudgeStats)

    def model_name(self) -> str:
        """The model this teacher runs, as a person names it (no secret): compared to tell a judge from the teacher."""
        return type(self).__name__

    def dtype_choice(self) -> str:
        """The precision this teacher generates in and why ('' where a server decides it)."""
        return ""

    @property
    def judge_stats(self) -> JudgeStats:
        """How this instance's `choose` calls were read (log-probabilities vs text fallbacks)."""
        return self._judge_stats


class BackedTeacher(Teacher, ABC):
    """A teacher resource whose work is done by a pure teacher (`backend()`): the resource holds the
    deployment's settings, the pure teacher answers the interface's calls."""

    @abstractmethod
    def backend(self) -> ChatCompletionsTeacher | LocalTeacher:
        """The pure teacher these settings make (made once per resource instance)."""

    def complete(
        self, requests: Sequence[ChatRequest], admit: Admit | None = None, on_result: OnResult | None = None
    ) -> list[ChatResult]:
        return self.backend().complete(requests, admit, on_result)

    def choose(self, messages: Sequence[Message], options: Sequence[str]) -> list[float]:
        return self.backend().choose(messages, options)

    def flow_stats(self) -> dict[str, int | float]:
        return self.backend().flow_stats()

    def choose_many(self, asks: Sequence[tuple[Sequence[Message], Sequence[str]]]) -> list[list[float]]:
        return self.backend().choose_many(asks)
