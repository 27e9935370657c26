import numpy as np

from reflection_assets.evaluation.bootstrap import BETTER, NO_EVIDENCE, WORSE, paired_interval, verdict


def test_a_constant_difference_gives_a_zero_width_interval():
    base = np.linspace(1.0, 3.0, 20)
    interval = paired_interval(base + 0.5, base)
    assert interval.delta == interval.low == interval.high == 0.5
    assert verdict(interval) == BETTER
    assert verdict(interval, higher_is_better=False) == WORSE


def test_a_zero_mean_difference_covers_zero():
    rng = np.random.default_rng(1)
    noise = rng.normal(size=40)
    noise -= noise.mean()
    interval = paired_interval(noise, np.zeros(40))
    assert abs(interval.delta) < 1e-12
    assert interval.low < 0 < interval.high
    assert verdict(interval) == NO_EVIDENCE


def test_the_interval_is_seeded_and_paired():
    a, b = [1, 0, 1, 1, 0, 1, 1, 1], [0, 0, 1, 0, 0, 1, 0, 1]
    assert paired_interval(a, b, seed=3) == paired_interval(a, b, seed=3)
    assert paired_interval(a, b, seed=3).n == 8
    # Pairing matters: a shared per-item offset cancels, so the interval stays tight.
    offsets = np.arange(30) * 10.0
    tight = paired_interval(offsets + 1.0 + np.resize([0.1, -0.1], 30), offsets)
    assert tight.high - tight.low < 0.2 and verdict(tight) == BETTER


def test_no_items_is_no_evidence():
    interval = paired_interval([], [])
    assert interval.n == 0 and verdict(interval) == NO_EVIDENCE
