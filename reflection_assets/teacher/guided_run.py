"""Guided plans (`guided`) run as continuations on reflection_assets.generation's engine.

Each step's sequence is the rendered prompt plus the assistant text so far plus the step's marker,
tokenized as one string, exactly what a fresh `generate` call per step would read. The engine keeps
the cached tokens that sequence starts with, so in practice only the marker (and any token a
re-tokenization changed at the join) is computed again.
"""

from __future__ import annotations

from typing import Any

from reflection_assets.generation.requests import GenerationRequest, NextStep, StepResult
from reflection_assets.teacher.guided import GuidedState
from reflection_assets.teacher.types import GuidePlan


class GuidedRun:
    """One prompt taken through a plan; the engine calls it when a step ends."""

    def __init__(self, tokenizer: Any, prompt_text: str, plan: GuidePlan, adapter: str | None = None) -> None:
        if not plan.steps:
            raise ValueError("a guide plan needs at least one step")
        self.tokenizer, self.prompt_text, self.plan, self.adapter = tokenizer, prompt_text, plan, adapter
        self.state = GuidedState()
        self.step_index = 0
        self.completion_tokens = 0
        self.requests = 0
        self.finish_reason = "stop"

    def _sequence(self) -> tuple[int, ...]:
        step = self.plan.steps[self.step_index]
        text = self.prompt_text + self.state.prefix_for(step)
        return tuple(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def request(self, prompt_ids: tuple[int, ...] | None = None) -> GenerationRequest:
        """The engine request for the first step (`prompt_ids`: its sequence, when already tokenized)."""
        first = self.plan.steps[0]
        later = self.plan.max_new_tokens() - first.max_new_tokens
        markers = sum(len(step.prefix) for step in self.plan.steps[1:])  # a token per character, at most
        return GenerationRequest(
            prompt_ids=prompt_ids if prompt_ids is not None else self._sequence(),
            max_new_tokens=first.max_new_tokens,
            adapter=self.adapter,
            stop=tuple(first.stop),
            continuation=self,
            reserve_tokens=later + markers,
        )

    def __call__(self, result: StepResult) -> NextStep | None:
        step = self.plan.steps[self.step_index]
        self.state.absorb(step, result.text, hit_length=result.finish_reason == "length")
        self.completion_tokens += len(result.token_ids)
        self.requests += 1
        if self.state.truncated:
            self.finish_reason = "length"
        self.step_index += 1
        if self.state.finished or self.step_index >= len(self.plan.steps):
            return None
        nxt = self.plan.steps[self.step_index]
        return NextStep(self._sequence(), nxt.max_new_tokens, tuple(nxt.stop))

    def text(self) -> str:
        """The assistant turn, closed as the plan says (call once the engine is done)."""
        return self.state.close(self.plan)
