"""Cost guard: what a reflection run would spend, counted before it spends anything.

Uses the runner's own planning, so the rows counted as cached are exactly those the run would
answer from llm_calls. Completion tokens are the worst case (every call writes max_new_tokens).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from reflection_assets.schema import Pair
from reflection_assets.teacher.cache import CallCache
from reflection_assets.teacher.planning import estimate_prompt_tokens, plan_calls
from reflection_assets.teacher.runner import group_by_key
from reflection_assets.teacher.settings import ReflectionSettings
from reflection_assets.teacher.types import INSTRUCTION, RESPONSE, ChatRequest, Stage

REFLECTION_STAGES: tuple[Stage, ...] = (INSTRUCTION, RESPONSE)  # each ingested row costs one call in each


def calls_saved(rows_removed: int) -> int:
    """Teacher calls that rows removed at ingest (near-duplicates) will not cost: one per reflection stage."""
    return rows_removed * len(REFLECTION_STAGES)


def estimate_cost(
    pairs: Sequence[Pair],
    stage: Stage,
    identity: dict,
    cache: CallCache | None = None,
    settings: ReflectionSettings | None = None,
    count_prompt_tokens: Callable[[ChatRequest], int] = estimate_prompt_tokens,
    near_duplicates_removed: int = 0,
) -> dict[str, int | str | bool | None]:
    """Calls, requests and tokens for the rows not yet cached, and what the caps would allow.

    `near_duplicates_removed`: rows the ingest's near-duplicate check took out before `pairs`
    (reported with the calls they save over both stages, not counted in `calls`).
    """
    settings = settings or ReflectionSettings()
    planned, limited = plan_calls(list(pairs), stage, identity, settings)
    hits = cache.lookup(c.key for c in planned) if cache is not None else {}
    groups = group_by_key([c for c in planned if c.key not in hits])
    requests = [g[0].request for g in groups]
    prompt_tokens = sum(count_prompt_tokens(r) * r.steps() for r in requests)
    completion_tokens = sum(r.max_new_tokens() for r in requests)
    calls = len(requests)
    cached = sum(c.key in hits for c in planned)
    return {
        "stage": stage,
        "backend": identity.get("backend"),
        "model": identity.get("model"),
        "prompt_version": settings.prompt_version,
        "guided": settings.guided,
        "rows": len(pairs),
        "rows_past_limit": len(limited),
        "rows_cached": cached,
        "rows_duplicate": len(planned) - cached - calls,  # share a call with an identical row
        "rows_near_duplicate": near_duplicates_removed,
        "calls_saved_by_near_duplicates": calls_saved(near_duplicates_removed),
        "calls": calls,
        "requests": sum(r.steps() for r in requests),
        "prompt_tokens": prompt_tokens,
        "max_completion_tokens": completion_tokens,
        "max_total_tokens": prompt_tokens + completion_tokens,
        "max_calls_cap": settings.max_calls,
        "max_tokens_cap": settings.max_tokens,
        "within_caps": (settings.max_calls is None or calls <= settings.max_calls)
        and (settings.max_tokens is None or prompt_tokens + completion_tokens <= settings.max_tokens),
    }
