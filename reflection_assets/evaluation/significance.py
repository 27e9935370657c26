"""Tests that hold their level at the project's sizes: an exact sign-flip permutation test, Holm.

Two models answered the same items; under the null that they are exchangeable, each paired
difference is as likely to have either sign. The sign-flip test compares |mean(d)| with its
distribution over every sign assignment: exact (all 2^m assignments of the m non-zero
differences) up to EXACT_MAX, Monte Carlo with the +1 correction above it, so its false-verdict
rate stays at or below alpha at any n (the percentile bootstrap it replaces said "better" for
n = 1 and gave 14-16 % false verdicts at n = 5-33). Zero differences (ties, common for pass/fail
metrics) carry no sign and leave the statistic unchanged, so they are dropped from the flips.

Over items alone, the test speaks of two particular models. The report's verdicts come from `runs`,
which also counts the spread between training runs; this test stays in the report as `p_items`
(these adapters), and its Holm step serves both.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ALPHA = 0.05
MIN_PAIRED_N = 10
EXACT_MAX = 16  # 2^16 sign vectors: exact; above, Monte Carlo
RESAMPLES = 10_000

BETTER, WORSE, NO_EVIDENCE, TOO_FEW = "better", "worse", "no evidence either way", "too few items"
TOO_FEW_RUNS = "too few runs"  # no arm trained with two seeds: the spread between training runs is unknown
VERDICTS = (BETTER, WORSE, NO_EVIDENCE, TOO_FEW, TOO_FEW_RUNS)


def _signs(m: int) -> np.ndarray:
    """Every +-1 vector of length m, one per row (2^m x m)."""
    codes = np.arange(2**m, dtype=np.int64)[:, None] >> np.arange(m)
    return 1.0 - 2.0 * (codes & 1)


def sign_flip_p(differences: Sequence[float], resamples: int = RESAMPLES, seed: int = 0) -> float:
    """Two-sided p-value of mean(differences) = 0 under sign symmetry; 1.0 when every difference is 0."""
    d = np.asarray(differences, dtype=float)
    d = d[d != 0]
    m = len(d)
    if m == 0:
        return 1.0
    observed = abs(d.sum())
    # Sums that equal the observed one up to rounding count as "as extreme" (conservative for ties).
    tolerance = 1e-9 * max(1.0, float(np.abs(d).sum()))
    if m <= EXACT_MAX:
        sums = np.abs(_signs(m) @ d)
        return float(np.mean(sums >= observed - tolerance))
    rng = np.random.default_rng(seed)
    extreme = 0
    for start in range(0, resamples, 2000):  # chunks keep memory flat at large n
        size = min(2000, resamples - start)
        flips = rng.integers(0, 2, size=(size, m)) * 2.0 - 1.0
        extreme += int(np.sum(np.abs(flips @ d) >= observed - tolerance))
    return (1 + extreme) / (1 + resamples)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN stays NaN and is left out of the family)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(len(p), np.nan)
    present = np.flatnonzero(~np.isnan(p))
    order = present[np.argsort(p[present], kind="mergesort")]
    m, running = len(order), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        out[index] = running
    return out.tolist()


def decide(
    delta: float, p_value: float, n: int, higher_is_better: bool = True, alpha: float = ALPHA, min_n: int = MIN_PAIRED_N
) -> str:
    """'better' / 'worse' when p < alpha in the metric's direction; 'too few items' below `min_n` pairs."""
    if n < max(1, min_n):
        return TOO_FEW
    if not np.isfinite(p_value) or p_value >= alpha or delta == 0:
        return NO_EVIDENCE
    return BETTER if (delta > 0) == higher_is_better else WORSE
