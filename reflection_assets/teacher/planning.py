"""Turn pairs into keyed teacher requests; shared by the runner and the cost estimate.

Both must compute the same cache keys, or the estimate would count cached rows as work to do.
"""

from __future__ import annotations

from dataclasses import dataclass

from reflection_assets.schema import Pair
from reflection_assets.teacher.cache import call_key
from reflection_assets.teacher.guided import plan_for
from reflection_assets.teacher.prompts import messages_for
from reflection_assets.teacher.settings import ReflectionSettings
from reflection_assets.teacher.types import STAGES, ChatRequest, Sampling, Stage


@dataclass(frozen=True)
class PlannedCall:
    index: int  # position of the pair in the input
    pair: Pair
    request: ChatRequest
    key: str


def row_id_of(pair: Pair) -> str:
    return pair.row_id or pair.content_id()


def build_request(stage: Stage, pair: Pair, settings: ReflectionSettings, guided: bool) -> ChatRequest:
    """The request for one pair; guided requests carry their step plan instead of a flat cap."""
    sampling = Sampling(
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        top_p=settings.top_p,
        seed=settings.seed,
    )
    guide = plan_for(stage, settings.critique_tokens, settings.max_new_tokens) if guided else None
    return ChatRequest.of(messages_for(stage, pair), sampling, guide, tag=row_id_of(pair))


def plan_calls(
    pairs: list[Pair], stage: Stage, identity: dict, settings: ReflectionSettings
) -> tuple[list[PlannedCall], list[int]]:
    """Planned calls for the rows within `limit`, and the indices left out by it."""
    if stage not in STAGES:
        raise ValueError(f"unknown reflection stage {stage!r}; expected one of {STAGES}")
    n = len(pairs) if settings.limit is None else min(settings.limit, len(pairs))
    planned = []
    for index, pair in enumerate(pairs[:n]):
        request = build_request(stage, pair, settings, settings.guided)
        planned.append(PlannedCall(index, pair, request, call_key(identity, settings.prompt_version, request)))
    return planned, list(range(n, len(pairs)))


def estimate_prompt_tokens(request: ChatRequest, chars_per_token: float = 3.5) -> int:
    """Rough prompt size without a tokenizer (English text is ~4 characters per token; err high)."""
    chars = sum(len(content) + 8 for _, content in request.messages)
    return int(chars / chars_per_token) + 1


def worst_case_tokens(request: ChatRequest, prompt_tokens: int) -> int:
    """Prompt (re-read at every guided step) plus every token the call may generate."""
    return prompt_tokens * request.steps() + request.max_new_tokens()
