"""Paired bootstrap over items: the interval of a mean difference (descriptive; verdicts are `significance`'s).

Both models answered the same items, so the items are resampled together (paired): per-item
differences carry the comparison, and item difficulty cancels. Seeded, so a re-run gives the same
interval to the last digit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    delta: float  # mean(candidate - reference)
    low: float
    high: float
    n: int


def paired_interval(
    candidate: Sequence[float],
    reference: Sequence[float],
    resamples: int = RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> Interval:
    """Percentile interval of mean(candidate - reference) under resampling items with replacement."""
    a, b = np.asarray(candidate, dtype=float), np.asarray(reference, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.shape} vs {b.shape}")
    n = len(a)
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    diff = a - b
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(diff.mean()), float(low), float(high), n)
