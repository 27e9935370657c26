"""The loss a person reads at the start and the end of a run: a mean over a window, not one batch.

One batch's loss on a few rows is noise: a small arm's first and last batches read `1.497 -> 3.506` while
every step sits near 1.5. The start and end figures are means over the first and the last epoch, which hold
the same rows. A run shorter than two epochs (a step-capped run over many rows) compares its halves, other
rows each, only when each half has enough steps for its mean to settle; a shorter run reports one mean, no trend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

EPOCH = "epoch"
HALF = "half"
RUN = "run"
MIN_STEPS_PER_HALF = 10  # below this, two halves of other rows differ by their rows more than by training


@dataclass(frozen=True)
class LossWindows:
    first: float  # mean logged loss of the first window (NaN: no step was logged, or RUN: no trend)
    final: float  # mean logged loss of the last window (RUN: of every step)
    window: str  # EPOCH, HALF or RUN: what each mean is taken over
    steps_per_window: tuple[int, int]  # (first, last) window's logged steps

    def text(self, digits: int = 4) -> str:
        return describe_losses(self.first, self.final, self.window, digits)


def describe_losses(first: float, final: float, window: str, digits: int = 4) -> str:
    """'loss 2.0100 -> 1.8500 (epoch means)' or 'loss 1.7300 (mean over the run: too few steps for a trend)'."""
    if window == RUN:
        return f"loss {final:.{digits}f} (mean over the run: too few steps for a trend)"
    return f"loss {first:.{digits}f} -> {final:.{digits}f} ({window} means)"


def loss_windows(log_history: Sequence[Mapping]) -> LossWindows:
    """The first and last window's mean training loss from a Trainer's `log_history`.

    Each logged step carries "loss" and "epoch" (fractional, the epoch the step ends in); a step belongs
    to epoch ceil(epoch) - 1. Entries without a loss (the run's summary, evaluations) are ignored.
    """
    steps = [(float(e.get("epoch", 0.0)), float(e["loss"])) for e in log_history if "loss" in e]
    losses = [loss for _, loss in steps]
    if not steps:
        return LossWindows(math.nan, math.nan, HALF, (0, 0))
    epochs = [max(math.ceil(epoch - 1e-9) - 1, 0) for epoch, _ in steps]
    if epochs[-1] - epochs[0] >= 1:
        first = [loss for e, loss in zip(epochs, losses) if e == epochs[0]]
        final = [loss for e, loss in zip(epochs, losses) if e == epochs[-1]]
        return LossWindows(_mean(first), _mean(final), EPOCH, (len(first), len(final)))
    half = len(losses) // 2
    if half < MIN_STEPS_PER_HALF:
        return LossWindows(math.nan, _mean(losses), RUN, (0, len(losses)))
    first, final = losses[:half], losses[-half:]
    return LossWindows(_mean(first), _mean(final), HALF, (len(first), len(final)))


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)
