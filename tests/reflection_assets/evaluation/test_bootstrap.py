import numpy as np

from reflection_assets.evaluation.bootstrap import paired_interval


def test_a_constant_difference_gives_a_zero_width_interval():
    base = np.linspace(1.0, 3.0, 20)
    interval = paired_interval(base + 0.5, base)
    assert interval.delta == interval.low == interval.high == 0.5


def test_a_zero_mean_difference_covers_zero():
    rng = np.random.default_rng(1)
    noise = rng.normal(size=40)
    noise -= noise.mean()
    interval = paired_interval(noise, np.zeros(40))
    assert abs(interval.delta) < 1e-12
    assert interval.low < 0 < interval.high


def test_the_interval_is_seeded_and_paired():
    a, b = [1, 0, 1, 1, 0, 1, 1, 1], [0, 0, 1, 0, 0, 1, 0, 1]
    assert paired_interval(a, b, seed=3) == paired_interval(a, b, seed=3)
    assert paired_interval(a, b, seed=3).n == 8
    # Pairing matters: a shared per-item offset cancels, so the interval stays tight.
    offsets = np.arange(30) * 10.0
    tight = paired_interval(offsets + 1.0 + np.resize([0.1, -0.1], 30), offsets)
    assert tight.high - tight.low < 0.2 and tight.low > 0


def test_no_items_gives_an_empty_interval():
    assert paired_interval([], []).n == 0
