"""Programmatic instruction-following checks in the IFEval manner: each takes the answer and returns pass/fail.

A check is named by `kind` and parametrised by plain JSON values, so a suite item stores its check
as data (`{"kind": "max_words", "n": 30}`) and the same item always gets the same verdict.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

_SENTENCE_END = re.compile(r"[.!?]+(?:\s+|$)")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+\S", re.MULTILINE)


def words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9']+", text)


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]


def lowercase(text: str) -> bool:
    return bool(text.strip()) and text == text.lower()


def max_words(text: str, n: int) -> bool:
    return 0 < len(words(text)) <= n


def min_words(text: str, n: int) -> bool:
    return len(words(text)) >= n


def max_sentences(text: str, n: int) -> bool:
    return 0 < len(sentences(text)) <= n


def bullet_count(text: str, n: int) -> bool:
    return len(_BULLET.findall(text)) == n


def required_words(text: str, words_: list[str]) -> bool:
    lowered = text.lower()
    return all(re.search(rf"\b{re.escape(w.lower())}\b", lowered) for w in words_)


def forbidden_words(text: str, words_: list[str]) -> bool:
    lowered = text.lower()
    return bool(text.strip()) and not any(re.search(rf"\b{re.escape(w.lower())}\b", lowered) for w in words_)


def valid_json(text: str) -> bool:
    """The whole answer parses as JSON (a ```json fence around it is allowed, as IFEval does)."""
    body = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip())
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def ends_with(text: str, phrase: str) -> bool:
    return text.strip().endswith(phrase)


def paragraph_count(text: str, n: int) -> bool:
    return len(paragraphs(text)) == n


CHECKERS: dict[str, Callable[..., bool]] = {
    "lowercase": lowercase,
    "max_words": max_words,
    "min_words": min_words,
    "max_sentences": max_sentences,
    "bullet_count": bullet_count,
    "required_words": required_words,
    "forbidden_words": forbidden_words,
    "valid_json": valid_json,
    "ends_with": ends_with,
    "paragraph_count": paragraph_count,
}


def run_check(check: dict[str, Any], text: str) -> bool:
    """Apply a stored check (`{"kind": ..., **params}`) to an answer."""
    params = dict(check)
    kind = params.pop("kind")
    if kind not in CHECKERS:
        raise ValueError(f"unknown check {kind!r}; known: {', '.join(CHECKERS)}")
    if "words" in params:
        params["words_"] = params.pop("words")
    return bool(CHECKERS[kind](text, **params))
