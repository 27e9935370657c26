"""Run parameters of a reflection stage (the asset's dg.Config maps onto this)."""

from __future__ import annotations

from dataclasses import dataclass

from reflection_assets.teacher.prompts import PROMPT_VERSION


@dataclass(frozen=True)
class ReflectionSettings:
    """Sampling, guidance and caps for one reflect_rows call.

    Sampling and guidance are part of the cache key; caps and limit are not (they
    change how much is done, not what an answer is).
    """

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    guided: bool = False
    critique_tokens: int = 128  # bound on the critique before the first marker when guided
    max_calls: int | None = None  # teacher calls this run may make (cached rows are free)
    max_tokens: int | None = None  # prompt + completion tokens this run may spend
    limit: int | None = None  # reflect only the first N rows (trial runs); the rest are skipped
    prompt_version: str = PROMPT_VERSION

    def __post_init__(self) -> None:
        for name in ("max_new_tokens", "critique_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in ("max_calls", "max_tokens", "limit"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 or None")
