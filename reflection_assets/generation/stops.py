"""Where a continuation ends: end-of-sequence tokens and stop strings, as `model.generate` decides.

Stop strings are matched by transformers' own StopStringCriteria on each row's trailing tokens, so a
row stops on exactly the token where `generate(stop_strings=...)` would stop it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers.generation.stopping_criteria import StopStringCriteria


def _ids(*values: Any) -> frozenset[int]:
    ids: set[int] = set()
    for value in values:
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    return frozenset(ids)


def stop_token_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """Token ids that end a continuation: EOS of the generation config and tokenizer, and pad."""
    config = getattr(model, "generation_config", None)
    return _ids(getattr(config, "eos_token_id", None), tokenizer.eos_token_id, tokenizer.pad_token_id)


def min_new_suppressed_ids(model: Any) -> frozenset[int]:
    """The token ids `generate(min_new_tokens=n)` masks out before n new tokens: the generation config's EOS
    only (its MinNewTokensLengthLogitsProcessor), not the tokenizer's pad or EOS, which it may still choose."""
    return _ids(getattr(getattr(model, "generation_config", None), "eos_token_id", None))


class StopStrings:
    """One StopStringCriteria per set of stop strings (building one scans the vocabulary)."""

    def __init__(self, tokenizer: Any, pad_id: int) -> None:
        self.tokenizer = tokenizer
        self.pad_id = pad_id
        self._criteria: dict[tuple[str, ...], StopStringCriteria] = {}

    def _criterion(self, stops: tuple[str, ...]) -> StopStringCriteria:
        if stops not in self._criteria:
            self._criteria[stops] = StopStringCriteria(self.tokenizer, list(stops))
        return self._criteria[stops]

    def hits(self, tails: Sequence[Sequence[int]], stops: Sequence[tuple[str, ...]]) -> list[bool]:
        """Whether each row's token sequence (its last tokens suffice) now ends a stop string."""
        found = [False] * len(tails)
        by_stops: dict[tuple[str, ...], list[int]] = {}
        for row, row_stops in enumerate(stops):
            if row_stops:
                by_stops.setdefault(tuple(row_stops), []).append(row)
        for row_stops, rows in by_stops.items():
            criterion = self._criterion(row_stops)
            width = criterion.maximum_token_len
            ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
            for k, row in enumerate(rows):  # left-padded, as in a generate() batch
                tail = list(tails[row][-width:])
                ids[k, width - len(tail) :] = torch.tensor(tail, dtype=torch.long)
            for row, hit in zip(rows, criterion(ids, None).tolist()):
                found[row] = bool(hit)
        return found
