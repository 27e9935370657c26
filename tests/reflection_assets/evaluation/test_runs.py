"""Runs as a source of chance: the pooled run spread, the test over runs and items, seeds needed."""

import math

import numpy as np
import pytest
from scipy import stats

from reflection_assets.evaluation.runs import arm_runs, compare, pooled_spread


def arm(rng, items, runs, run_sd, noise_sd, shift=0.0):
    """runs x items scores: the items' own values, a shift per run, noise per score."""
    return items + shift + rng.normal(0, run_sd, (runs, 1)) + rng.normal(0, noise_sd, (runs, len(items)))


def test_the_pooled_spread_recovers_the_run_and_noise_variances():
    rng = np.random.default_rng(0)
    items = rng.normal(2, 0.5, 100)
    arms = {f"a{k}": arm(rng, items, 100, run_sd=0.05, noise_sd=0.2) for k in range(4)}
    spread = pooled_spread(arms)
    assert spread.run_df == 4 * 99 and spread.noise_df == 4 * 99 * 99
    assert math.sqrt(spread.noise_var) == pytest.approx(0.2, rel=0.02)
    # One run's mean varies by its shift and its noise averaged over the items (~7 % standard error).
    assert spread.run_var == pytest.approx(0.05**2 + 0.2**2 / 100, rel=0.2)
    assert spread.arms["a0"].between_sd == pytest.approx(0.05, rel=0.2)


def test_arms_with_one_run_leave_the_spread_unknown_and_add_nothing_to_it():
    rng = np.random.default_rng(1)
    items = rng.normal(2, 0.5, 30)
    single = pooled_spread({"a": arm(rng, items, 1, 0.05, 0.02), "b": arm(rng, items, 1, 0.05, 0.02)})
    assert not single.known and math.isnan(single.run_sd)
    two = arm(rng, items, 2, 0.05, 0.02)
    assert pooled_spread({"a": two, "b": arm(rng, items, 1, 0.05, 0.02)}).run_var == pooled_spread({"a": two}).run_var
    assert math.isnan(arm_runs(two[:1]).between_sd)


def test_without_interaction_the_test_is_t_on_the_replicate_runs():
    rng = np.random.default_rng(2)
    items = rng.normal(2, 0.5, 33)
    a, b = arm(rng, items, 2, 0.01, 0.0), arm(rng, items, 2, 0.01, 0.0)
    spread = pooled_spread({"a": a, "b": b})
    test = compare(a, b, spread, reference_trained=True)
    assert test.df == 2 and test.item_var == pytest.approx(0.0, abs=1e-20)
    assert test.se == pytest.approx(math.sqrt(spread.run_var * (1 / 2 + 1 / 2)))
    t = test.delta / test.se
    assert test.p_value == pytest.approx(2 * stats.t.sf(abs(t), 2))
    assert test.low < test.delta < test.high


def test_an_untrained_reference_adds_no_run_variance():
    rng = np.random.default_rng(3)
    items = rng.normal(2, 0.5, 33)
    a, b = arm(rng, items, 3, 0.01, 0.0), arm(rng, items, 3, 0.01, 0.0)
    spread = pooled_spread({"a": a, "b": b})
    base = items[None, :]
    assert compare(a, base, spread, reference_trained=False).se == pytest.approx(math.sqrt(spread.run_var / 3))


def test_a_large_effect_beyond_the_run_spread_is_found_with_two_seeds():
    rng = np.random.default_rng(4)
    items = rng.normal(2, 0.5, 33)
    arms = {name: arm(rng, items, 2, 0.005, 0.02, shift) for name, shift in (("a", -0.05), ("b", 0), ("c", 0))}
    test = compare(arms["a"], arms["b"], pooled_spread(arms), reference_trained=True)
    assert test.p_value < 0.01 and test.high < 0


def test_seeds_needed_reaches_the_effect_and_says_when_only_items_would():
    rng = np.random.default_rng(5)
    items = rng.normal(2, 0.5, 40)
    arms = {name: arm(rng, items, 2, 0.02, 0.01) for name in "abc"}
    spread = pooled_spread(arms)
    test = compare(arms["a"], arms["b"], spread, reference_trained=True)
    needed = test.seeds_needed(0.02, spread)
    assert 2 <= needed < 100
    # With `needed` seeds a side, the run term alone leaves a detectable difference at or under the effect.
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert z * math.sqrt(2 * spread.run_var / needed + test.item_var / 40) <= 0.02 + 1e-12
    assert z * math.sqrt(2 * spread.run_var / (needed - 1) + test.item_var / 40) > 0.02 or needed == 2
    # An arm x item spread that hides the effect by itself: more seeds cannot help.
    wild = arms["a"] + rng.normal(0, 0.5, 40)
    assert math.isinf(compare(wild, arms["b"], spread, reference_trained=True).seeds_needed(0.02, spread))


@pytest.mark.parametrize(("runs", "arms", "items"), [(2, 4, 33), (3, 6, 40), (2, 1, 33)])
@pytest.mark.parametrize("run_sd", [0.0, 0.01, 0.05])
def test_the_test_holds_its_level_under_the_null(runs, arms, items, run_sd):
    """The test alone, many times (the report's own calibration is in test_calibration.py)."""
    rng = np.random.default_rng(runs * 100 + arms + int(run_sd * 1000))
    trials, false = 2000, 0
    for _ in range(trials):
        values = rng.normal(2, 0.5, items)
        matrices = {k: arm(rng, values, runs, run_sd, 0.02) for k in range(max(arms, 2))}
        spread = pooled_spread(dict(list(matrices.items())[:arms]))
        false += compare(matrices[0], matrices[1], spread, reference_trained=True).p_value < 0.05
    assert false / trials <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / trials)
