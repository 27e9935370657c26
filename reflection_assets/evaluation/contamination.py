"""Contamination: eval items that share a 13-gram of words with any training row (rewrites included).

Word 13-grams over lower-cased alphanumeric tokens, as in GPT-3's and Llama's decontamination.
Such items are listed and left out of the report, so a gain cannot come from having seen the test.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping

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
