"""Word n-grams: the one overlap measure of the evaluation's contamination check and the exports'
decontamination, so both call the same text "overlapping".

Lower-cased alphanumeric tokens, 13 words by default, as in GPT-3's and Llama's decontamination.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

NGRAM = 13
_TOKEN = re.compile(r"[a-z0-9]+")

Key = TypeVar("Key", bound=Hashable)


def ngrams(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    """The text's word n-grams (none when it has fewer than n words)."""
    if n < 1:
        raise ValueError(f"n-gram size must be at least 1, not {n}")
    tokens = _TOKEN.findall(text.lower())
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def shared_ngrams(texts: Iterable[str], n: int = NGRAM) -> set[tuple[str, ...]]:
    """Every n-gram of `texts` together."""
    seen: set[tuple[str, ...]] = set()
    for text in texts:
        seen |= ngrams(text, n)
    return seen


class NgramIndex(Generic[Key]):
    """n-gram -> the keys whose text holds it; built once, then asked about many texts."""

    def __init__(self, n: int = NGRAM) -> None:
        ngrams("", n)  # validates n
        self.n = n
        self._keys: dict[tuple[str, ...], list[Key]] = {}

    def add(self, key: Key, text: str) -> None:
        for gram in ngrams(text, self.n):
            self._keys.setdefault(gram, []).append(key)

    def __len__(self) -> int:
        return len(self._keys)

    def matches(self, text: str) -> Counter[Key]:
        """Key -> how many of the text's n-grams it shares (keys sharing none are absent)."""
        found: Counter[Key] = Counter()
        for gram in ngrams(text, self.n):
            found.update(self._keys.get(gram, ()))
        return found
