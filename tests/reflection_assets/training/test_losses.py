"""The start and end losses are window means: a noisy last batch does not read as divergence."""

import math

from reflection_assets.training.losses import EPOCH, HALF, RUN, loss_windows


def history(losses_per_epoch: list[list[float]]) -> list[dict]:
    """A Trainer's log_history: one entry per step, "epoch" the fractional epoch the step ends in."""
    entries, step = [], 0
    for epoch, losses in enumerate(losses_per_epoch):
        for i, loss in enumerate(losses, start=1):
            step += 1
            entries.append({"loss": loss, "epoch": epoch + i / len(losses), "step": step})
    return [*entries, {"train_runtime": 1.0, "epoch": float(len(losses_per_epoch)), "step": step}]


def test_three_epochs_give_the_first_and_last_epochs_means():
    # The case of the issue: steps near 1.5, the last batch 3.5; per-batch ends read 1.497 -> 3.506.
    windows = loss_windows(history([[1.497, 1.6, 1.4], [1.5, 1.45, 1.55], [1.2, 1.3, 3.506]]))
    assert windows.window == EPOCH and windows.steps_per_window == (3, 3)
    assert math.isclose(windows.first, (1.497 + 1.6 + 1.4) / 3)
    assert math.isclose(windows.final, (1.2 + 1.3 + 3.506) / 3)
    assert windows.text(3) == "loss 1.499 -> 2.002 (epoch means)"


def test_a_long_run_shorter_than_two_epochs_compares_its_halves():
    # A step-capped run over many rows: 21 steps, all inside the first epoch.
    losses = [2.0] * 10 + [9.0] + [1.0] * 10
    entries = [{"loss": v, "epoch": 0.01 * (i + 1), "step": i + 1} for i, v in enumerate(losses)]
    windows = loss_windows(entries)
    assert windows.window == HALF and windows.steps_per_window == (10, 10)  # the middle step is in neither
    assert (windows.first, windows.final) == (2.0, 1.0)


def test_a_short_run_under_two_epochs_has_one_mean_and_no_trend():
    # Six steps over other rows each: halves of three would compare rows, not training (1.44 -> 2.01 read as
    # divergence in the demo); the run's mean is reported alone.
    entries = [{"loss": v, "epoch": 0.1 * (i + 1), "step": i + 1} for i, v in enumerate([1.2, 1.5, 1.6, 2.4, 1.9, 1.7])]
    windows = loss_windows(entries)
    assert windows.window == RUN and math.isnan(windows.first) and math.isclose(windows.final, 10.3 / 6)
    assert windows.text(3) == "loss 1.717 (mean over the run: too few steps for a trend)"
    one = loss_windows([{"loss": 2.5, "epoch": 1.0, "step": 1}])
    assert one.window == RUN and one.final == 2.5 and one.steps_per_window == (0, 1)


def test_no_logged_step_is_nan():
    none = loss_windows([{"train_runtime": 1.0, "epoch": 1.0, "step": 0}])
    assert math.isnan(none.first) and math.isnan(none.final)
