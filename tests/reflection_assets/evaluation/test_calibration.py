"""The report's verdicts hold their level on simulated null data, with and without run-level shifts, at the
demo's and the experiment's sizes; the items-only verdict it replaced does not; power on planted effects."""

import math

import pytest

from reflection_assets.evaluation.calibration import DEMO, DEMO_NOISE, EXPERIMENT, Noise, error_rates

RUNS = 300  # the whole report per simulated evaluation (~30-50 ms); benchmarks/verdict_calibration.py runs 2,000
ALPHA = 0.05
# Three Monte Carlo standard errors of a rate of 5 % estimated from RUNS simulated evaluations.
LEVEL = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / RUNS)


@pytest.mark.parametrize("design", [DEMO, EXPERIMENT], ids=lambda d: d.name)
@pytest.mark.parametrize("run_sd", [0.0, DEMO_NOISE.run_sd], ids=["no run shifts", "run shifts as in the demo"])
def test_false_verdicts_stay_at_the_level_for_the_primary_row_and_the_holm_family(design, run_sd):
    noise = Noise(DEMO_NOISE.item_sd, DEMO_NOISE.noise_sd, run_sd)
    rates = error_rates(design, noise, runs=RUNS, seed=design.items + int(run_sd > 0))
    assert rates.primary <= LEVEL, f"primary: {rates.primary:.3f} false verdicts"
    assert rates.family <= LEVEL, f"Holm family: {rates.family:.3f} runs with a false verdict"


def test_the_items_only_verdict_decides_on_null_data_when_runs_shift():
    """What the report did before: averaged seeds, tested over items, and read run shifts as method effects."""
    rates = error_rates(DEMO, DEMO_NOISE, runs=100, seed=5)
    assert rates.primary_items_only > 0.3 and rates.family_items_only > 0.3
    assert rates.primary <= LEVEL


@pytest.mark.parametrize(
    ("design", "least_power"), [(DEMO, 0.5), (EXPERIMENT, 0.8)], ids=lambda v: getattr(v, "name", v)
)
def test_an_effect_four_times_the_run_spread_is_found(design, least_power):
    effect = 4 * DEMO_NOISE.run_sd
    rates = error_rates(design, DEMO_NOISE, {"selective": -effect}, runs=100, seed=9)
    assert rates.primary >= least_power, f"power {rates.primary:.2f} at {effect}"
    assert rates.family <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / rates.runs)  # rows without selective
