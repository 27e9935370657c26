"""Contamination: eval items that share a 13-gram of words with any training row (rewrites included).

Word 13-grams over lower-cased alphanumeric tokens, as in GPT-3's and Llama's decontamination.
Such items are listed and left out of the report, so a gain cannot come from having seen the test.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from reflection_assets.evaluation.suites import EvalItem

NGRAM = 13


def ngrams(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    tokens = re.findall(r"[a-z0-9]+", text.lower())
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def contaminated_items(items: Mapping[str, str], training_texts: Iterable[str], n: int = NGRAM) -> dict[str, int]:
    """Item id -> number of its n-grams found in the training texts, for items with at least one."""
    seen: set[tuple[str, ...]] = set()
    for text in training_texts:
        seen |= ngrams(text, n)
    out = {}
    for item_id, text in items.items():
        shared = len(ngrams(text, n) & seen)
        if shared:
            out[item_id] = shared
    return out


def flag_contaminated(
    scores: pd.DataFrame, items: Mapping[str, list[EvalItem]], training: pd.DataFrame
) -> dict[str, int]:
    """Set `scores.contaminated` for items sharing a 13-gram with any training row; return those items.

    `training` holds every arm's rows (instruction, input, output: rewrites included). Items that
    only the score rows know (lm-eval's copies of a suite) are checked by their instruction and reference.
    """
    texts = {i.item_id: i.text for suite in items.values() for i in suite}
    for row in scores.itertuples():
        texts.setdefault(row.item_id, f"{row.instruction}\n{row.reference}")
    rows = training.reindex(columns=["instruction", "input", "output"]).fillna("").astype(str)
    found = contaminated_items(texts, ("\n".join(r) for r in rows.itertuples(index=False)))
    scores["contaminated"] = scores["item_id"].isin(found)
    return found
