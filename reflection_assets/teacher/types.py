"""Plain data passed between the runner and the teacher backends.

Kept free of Dagster and HTTP so the runner, the cache and the parsers stay pure and testable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}
Stage = Literal["instruction", "response", "format"]  # format: Reflection-70B rewrite of a selected answer
STAGES: tuple[str, ...] = get_args(Stage)
INSTRUCTION, RESPONSE, FORMAT = STAGES

# Status of one teacher call (a guided call made of several requests is still one call).
CALL_OK = "ok"
CALL_ERROR = "error"
CALL_SKIPPED = "skipped"  # refused by the caller's admission gate (a cap), never sent


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters; all of them are part of the cache key."""

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    min_new_tokens: int = 0  # only benchmarks force it, to compare equal amounts of work
    stop: tuple[str, ...] = ()

    def key_dict(self) -> dict:
        return {**asdict(self), "stop": list(self.stop)}


@dataclass(frozen=True)
class GuideStep:
    """One step of guided generation: append `prefix` to the assistant turn, then generate.

    The generated text is cut at the first `stop` string. A step whose `required_stop` is set
    (a marked section) ends the plan when it runs out of tokens before its stop string, so a
    truncated section is reported by the parser instead of being closed artificially.
    """

    prefix: str
    max_new_tokens: int
    stop: tuple[str, ...] = ()
    required_stop: bool = True


@dataclass(frozen=True)
class GuidePlan:
    """Steps of guided generation and the text that closes the last one."""

    steps: tuple[GuideStep, ...]
    suffix: str = ""

    def key_dict(self) -> dict:
        return {"steps": [asdict(s) | {"stop": list(s.stop)} for s in self.steps], "suffix": self.suffix}

    def max_new_tokens(self) -> int:
        return sum(s.max_new_tokens for s in self.steps)


@dataclass(frozen=True)
class ChatRequest:
    """One logical teacher call: chat messages, sampling and an optional guide."""

    messages: tuple[tuple[str, str], ...]  # (role, content), immutable so requests can be shared
    sampling: Sampling = field(default_factory=Sampling)
    guide: GuidePlan | None = None
    tag: str = ""  # row id, for logs only

    @staticmethod
    def of(
        messages: list[Message], sampling: Sampling | None = None, guide: GuidePlan | None = None, tag: str = ""
    ) -> ChatRequest:
        return ChatRequest(tuple((m["role"], m["content"]) for m in messages), sampling or Sampling(), guide, tag)

    def message_dicts(self) -> list[Message]:
        return [{"role": r, "content": c} for r, c in self.messages]

    def max_new_tokens(self) -> int:
        return self.guide.max_new_tokens() if self.guide else self.sampling.max_new_tokens

    def steps(self) -> int:
        return len(self.guide.steps) if self.guide else 1


@dataclass
class ChatResult:
    """What one teacher call produced; errors are values here, never exceptions."""

    text: str = ""
    status: str = CALL_OK
    error: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    requests: int = 0  # HTTP requests (retries included) or generate() passes
    retries: int = 0  # requests that repeated a failed one
    finish_reason: str = ""  # "stop" | "length" | "" (unknown)

    @property
    def ok(self) -> bool:
        return self.status == CALL_OK

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


# Called just before a request would be sent; returning False skips it (caps).
Admit = Callable[[ChatRequest], bool]
# Called as each call completes (index into the submitted list), so results are saved early.
OnResult = Callable[[int, ChatResult], None]
