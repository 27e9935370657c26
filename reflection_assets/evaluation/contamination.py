"""Contamination: eval items that share an n-gram of words (13 by default) with any training row (rewrites included).

Word n-grams from `reflection_assets.ngrams`, the measure the exports' decontamination uses too.
Such items are listed and left out of the report, so a gain cannot come from having seen the test.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from reflection_assets.ngrams import NGRAM, ngrams, shared_ngrams

if TYPE_CHECKING:
    import pandas as pd

    from reflection_assets.evaluation.suites import EvalItem

__all__ = ["NGRAM", "contaminated_items", "flag_contaminated", "ngrams"]


def contaminated_items(items: Mapping[str, str], training_texts: Iterable[str], n: int = NGRAM) -> dict[str, int]:
    """Item id -> number of its n-grams found in the training texts, for items with at least one."""
    seen = shared_ngrams(training_texts, n)
    out = {}
    for item_id, text in items.items():
        shared = len(ngrams(text, n) & seen)
        if shared:
            out[item_id] = shared
    return out


def flag_contaminated(
    scores: pd.DataFrame, items: Mapping[str, list[EvalItem]], training: pd.DataFrame, n: int = NGRAM
) -> dict[str, int]:
    """Set `scores.contaminated` for items sharing an n-gram with any training row; return those items.

    `training` holds every arm's rows (instruction, input, output: rewrites included). Items that
    only the score rows know (lm-eval's copies of a suite) are checked by their instruction and reference.
    """
    texts = {i.item_id: i.text for suite in items.values() for i in suite}
    for row in scores.itertuples():
        texts.setdefault(row.item_id, f"{row.instruction}\n{row.reference}")
    rows = training.reindex(columns=["instruction", "input", "output"]).fillna("").astype(str)
    found = contaminated_items(texts, ("\n".join(r) for r in rows.itertuples(index=False)), n)
    scores["contaminated"] = scores["item_id"].isin(found)
    return found
