"""What an evaluation run says about itself: counts, truncation per suite, the items left out."""

from __future__ import annotations

from typing import Any

import pandas as pd


def generated_rows(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per generated answer (a model, seed, suite and item), whatever metrics were read from it."""
    if not len(scores):
        return scores
    generated = scores[scores["output"].astype(str) != ""]
    return generated.drop_duplicates(["model", "seed", "suite", "item_id"]) if len(generated) else generated


def evaluation_numbers(
    scores: pd.DataFrame, stats: dict[str, Any], *, models: int, dropped: int, skipped: int, contaminated: int
) -> dict[str, int | float]:
    """The run's counts (rows, models, items left out, the evaluator's own stats) and its generation rate."""
    generated = generated_rows(scores)
    numbers: dict[str, int | float] = {
        "rows": len(scores),
        "items_dropped_duplicate": dropped,
        "truncation_rate": float(generated["truncated"].mean()) if len(generated) else 0.0,
        "models": models,
        "arms_skipped": skipped,
        "items_contaminated": contaminated,
        **{k: (round(v, 2) if isinstance(v, float) else v) for k, v in stats.items()},
    }
    if stats.get("generation_seconds"):
        numbers["generation_tokens_per_s"] = round(stats["new_tokens"] / stats["generation_seconds"], 1)
    return numbers


def truncation_per_suite(scores: pd.DataFrame) -> dict[str, float]:
    """The share of generated answers cut by the token limit, per suite."""
    generated = generated_rows(scores)
    if not len(generated):
        return {}
    return {str(k): round(float(v), 3) for k, v in generated.groupby("suite")["truncated"].mean().items()}


def contaminated_instructions(scores: pd.DataFrame, width: int = 80) -> list[str]:
    """The instructions of the items left out for sharing an n-gram with a training row (cut to `width`)."""
    if not len(scores):
        return []
    flagged = scores.loc[scores["contaminated"].astype(bool), "instruction"].astype(str)
    return sorted(flagged.str.slice(0, width).unique().tolist())
