"""Counters of one reflection run, for asset metadata and MLflow (flat, JSON-safe values)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class RunStats:
    stage: str
    backend: str
    model: str
    prompt_version: str
    mode: str = ""  # "guided" | "unguided": how the teacher wrote the layout
    rows_in: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    calls_made: int = 0  # teacher calls sent this run (a guided call counts once)
    calls_cached: int = 0  # rows answered from llm_calls, no call made
    calls_deduplicated: int = 0  # rows sharing a call with an identical row of this run
    calls_failed: int = 0
    requests: int = 0  # HTTP requests / generate passes, retries included
    retries: int = 0
    prompt_tokens: int = 0  # spent this run (cached rows cost nothing)
    completion_tokens: int = 0
    stopped_by: str = ""  # "max_calls" | "max_tokens" when a cap ended the run early
    limited_rows: int = 0  # rows past `limit`
    elapsed_s: float = 0.0
    cache_lock_waits: int = 0
    # A server teacher's pacing (0 in process): the highest in-flight limit reached, the 429/503 push-backs that
    # cut it, and the seconds spent waiting for the requests- and tokens-per-minute limits.
    peak_in_flight: int = 0
    push_backs: int = 0
    rate_wait_s: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def metadata(self) -> dict[str, int | float | str]:
        """Flat dict (outcome counts as outcome_<name>) for Dagster metadata / MLflow metrics."""
        flat = {k: v for k, v in asdict(self).items() if k != "outcomes"}
        flat.update({f"outcome_{name}": count for name, count in sorted(self.outcomes.items())})
        flat["total_tokens"] = self.total_tokens
        return flat


JUDGE_SOURCES = ("logprobs", "text", "none")  # where a judge's choice was read from


@dataclass
class JudgeStats:
    """How a judge's choices were read: from the options' log-probabilities, or from the reply's text.

    `text` counts fallbacks (the server offered no log-probabilities), `none` choices that neither
    could decide (every option equally likely).
    """

    logprobs: int = 0
    text: int = 0
    none: int = 0

    def record(self, source: str) -> None:
        if source not in JUDGE_SOURCES:
            raise ValueError(f"unknown judge source {source!r}; one of {JUDGE_SOURCES}")
        setattr(self, source, getattr(self, source) + 1)

    @property
    def choices(self) -> int:
        return self.logprobs + self.text + self.none

    def metadata(self) -> dict[str, int]:
        return {"judge_choices": self.choices, **{f"judge_from_{s}": getattr(self, s) for s in JUDGE_SOURCES}}
