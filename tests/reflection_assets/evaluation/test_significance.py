"""The sign-flip test holds its level at the project's sizes (calibration on simulated null data), Holm, power."""

import math

import numpy as np
import pytest

from reflection_assets.evaluation.significance import (
    BETTER,
    NO_EVIDENCE,
    TOO_FEW,
    WORSE,
    decide,
    holm,
    sign_flip_p,
)

RUNS = 1000
ALPHA = 0.05
# Monte Carlo tolerance: three standard errors of a rate of 5 % estimated from RUNS runs.
TOLERANCE = 3 * math.sqrt(ALPHA * (1 - ALPHA) / RUNS)


def null_differences(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Paired differences of two exchangeable models: binary pass/fail, Gaussian, heavy-tailed (t, 2 df)."""
    if kind == "binary":
        return (rng.random(n) < 0.6).astype(float) - (rng.random(n) < 0.6).astype(float)
    if kind == "gaussian":
        return rng.normal(size=n)
    return rng.standard_t(2, size=n)


@pytest.mark.parametrize("kind", ["binary", "gaussian", "heavy_tailed"])
@pytest.mark.parametrize("n", [5, 15, 33])
def test_false_verdict_rate_holds_its_level_under_the_null(kind, n):
    rng = np.random.default_rng(1000 * n + len(kind))
    false = 0
    for run in range(RUNS):
        d = null_differences(kind, n, rng)
        # min_n=1: the test itself, not the "too few items" floor, must hold the level.
        if decide(float(d.mean()), sign_flip_p(d, seed=run), n, min_n=1) in (BETTER, WORSE):
            false += 1
    assert false / RUNS <= ALPHA + TOLERANCE, f"{kind} n={n}: {false / RUNS:.3f} false verdicts"


def test_a_real_difference_is_found_at_the_projects_sizes():
    rng = np.random.default_rng(7)
    d = rng.normal(loc=1.0, scale=0.8, size=33)
    p = sign_flip_p(d)
    assert p < 0.01
    assert decide(float(d.mean()), p, 33) == BETTER
    assert decide(float(d.mean()), p, 33, higher_is_better=False) == WORSE  # NLL: a higher value is worse


def test_small_samples_are_too_few_and_three_same_sign_differences_are_not_evidence():
    assert decide(0.5, 0.001, 9) == TOO_FEW  # default floor: 10 pairs
    assert decide(1.0, 0.001, 1, min_n=1) == BETTER  # the floor, not the test, refuses n=1 by default
    # The sign test's answer for three positive differences: p = 2/8.
    assert sign_flip_p([1.0, 2.0, 3.0]) == pytest.approx(0.25)
    assert decide(2.0, sign_flip_p([1.0, 2.0, 3.0]), 3, min_n=1) == NO_EVIDENCE


def test_the_exact_test_counts_every_sign_assignment():
    # Four differences of +1: only the all-plus and all-minus assignments reach |sum| = 4.
    assert sign_flip_p([1, 1, 1, 1]) == pytest.approx(2 / 16)
    # Zeros carry no sign: the same as without them.
    assert sign_flip_p([1, 1, 1, 1, 0, 0, 0]) == pytest.approx(2 / 16)
    assert sign_flip_p([0, 0, 0]) == 1.0


def test_the_monte_carlo_test_is_seeded_and_agrees_with_the_exact_one_in_distribution():
    d = np.random.default_rng(3).normal(loc=0.3, size=40)
    assert sign_flip_p(d, seed=5) == sign_flip_p(d, seed=5)
    assert 0 < sign_flip_p(d) <= 1
    # 16 differences are exact; the same values with 30 extra zeros stay exact (zeros dropped).
    e = np.random.default_rng(4).normal(loc=0.3, size=16)
    assert sign_flip_p(np.concatenate([e, np.zeros(30)])) == sign_flip_p(e)


def test_holm_adjusts_step_down_and_keeps_missing_values_out_of_the_family():
    adjusted = holm([0.01, 0.04, 0.03, float("nan")])
    assert adjusted[0] == pytest.approx(0.03)  # 3 x 0.01
    assert adjusted[2] == pytest.approx(0.06)  # 2 x 0.03
    assert adjusted[1] == pytest.approx(0.06)  # max(1 x 0.04, the previous 0.06)
    assert math.isnan(adjusted[3])
    assert holm([0.9, 0.8]) == [1.0, 1.0]
