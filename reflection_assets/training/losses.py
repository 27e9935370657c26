"""The loss a person reads at the start and the end of a run: a mean over a window, not one batch.

One batch's loss on a few rows is noise: a small arm's first and last batches read `1.497 -> 3.506` while
every step sits near 1.5. The start and end figures are means over the first and the last epoch; a run
shorter than two epochs (a step-capped run over many rows) splits its logged steps into halves instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

EPOCH = "epoch"
HALF = "half"


@dataclass(frozen=True)
class LossWindows:
    first: float  # mean logged loss of the first window (NaN: no step was logged)
    final: float  # mean logged loss of the last window
    window: str  # EPOCH or HALF: what each mean is taken over
    steps_per_window: tuple[int, int]  # (first, last) window's logged steps

    def describe(self) -> str:
        """'mean per epoch' / 'mean per half of the run', for a console line or a model card."""
        return f"mean per {self.window}"


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
    half = max(len(losses) // 2, 1)
    first, final = losses[:half], losses[-half:]
    return LossWindows(_mean(first), _mean(final), HALF, (len(first), len(final)))


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)
