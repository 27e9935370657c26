"""What the generation engine is asked for and answers, without torch.

The evaluation runner, the served (vLLM) backend and guided plans build requests; the code
location imports them, and should not load torch and transformers to do so. The engine that runs
them is `generation.engine`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" in adapter_names


@dataclass(frozen=True)
class StepResult:
    """What one step of a request produced (the input of its continuation)."""

    token_ids: tuple[int, ...]
    text: str
    finish_reason: str  # "stop" (an end token or a stop string) | "length"


@dataclass(frozen=True)
class NextStep:
    """Where a request goes on: the whole token sequence to continue (prompt, text so far, new marker)."""

    sequence_ids: tuple[int, ...]
    max_new_tokens: int
    stop: tuple[str, ...] = ()


Continuation = Callable[[StepResult], "NextStep | None"]


@dataclass(frozen=True)
class GenerationRequest:
    prompt_ids: tuple[int, ...]  # already templated token ids
    max_new_tokens: int
    adapter: str | None = None  # PEFT adapter name of the loaded PeftModel; None = the base model
    stop: tuple[str, ...] = ()  # stop strings, matched as generate(stop_strings=...) does
    # Before this many new tokens the generation config's EOS is suppressed and no token ends the request,
    # as in generate(min_new_tokens=...) (benchmarks force equal work).
    min_new_tokens: int = 0
    continuation: Continuation | None = field(default=None, compare=False)
    reserve_tokens: int = 0  # tokens later steps may add (batch sizing only)

    def planned_length(self) -> int:
        return len(self.prompt_ids) + self.max_new_tokens + self.reserve_tokens
