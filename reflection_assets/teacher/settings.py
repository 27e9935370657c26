"""Run parameters of a reflection stage (the asset's dg.Config maps onto this)."""

from __future__ import annotations

from dataclasses import dataclass

from reflection_assets.documented import documented
from reflection_assets.teacher.prompts import PROMPT_VERSION


@dataclass(frozen=True)
class ReflectionSettings:
    """Sampling, guidance and caps for one reflect_rows call.

    Sampling and guidance are part of the cache key; caps and limit are not (they
    change how much is done, not what an answer is).
    """

    max_new_tokens: int = documented(512, "tokens the teacher may write per reflection")
    temperature: float = documented(0.0, "sampling temperature (0: greedy)")
    top_p: float = documented(1.0, "nucleus sampling mass (with a temperature above 0)")
    seed: int | None = documented(None, "sampling seed (unset: none)")
    guided: bool = documented(
        False, "guided generation: each marker of the layout is opened for the teacher, which writes only the "
        "sections (for a small teacher that does not write the layout by itself)"
    )
    critique_tokens: int = documented(128, "bound on the critique before the first marker when guided")
    max_calls: int | None = documented(None, "teacher calls this run may make (cached rows are free; unset: no cap)")
    max_tokens: int | None = documented(None, "prompt + completion tokens this run may spend (unset: no cap)")
    limit: int | None = documented(
        None, "reflect only the first N rows (trial runs); the rest are skipped (unset: every row)"
    )
    prompt_version: str = documented(PROMPT_VERSION, "version of the reflection prompts (part of the cache key)")

    def __post_init__(self) -> None:
        for name in ("max_new_tokens", "critique_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in ("max_calls", "max_tokens", "limit"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 or None")
