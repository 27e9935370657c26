"""IFD arithmetic: from the losses of two passes to ifd_ppl / ifd_loss with a status.

ifd_ppl = exp(loss_cond - loss_alone) is what the published selection uses; ifd_loss is the
plain ratio. A score whose status is not ok is None, never 0 or NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from reflection_assets.scoring import statuses
from reflection_assets.scoring.sequences import Plan, SeqLoss


@dataclass(frozen=True)
class Ratio:
    """One IFD-style score: both losses, the two ratios, the scored token count and a status."""

    cond: float | None
    alone: float | None
    ppl: float | None
    loss: float | None
    n_tokens: int | None
    status: str


def failed(status: str, n_tokens: int | None = None) -> Ratio:
    return Ratio(None, None, None, None, n_tokens, status)


def ratio(cond: float, alone: float, n_tokens: int | None) -> Ratio:
    """Both ratios; an unconditioned loss of exactly 0 makes ifd_loss undefined, hence an error."""
    if alone == 0.0:
        return failed(statuses.error(statuses.ZERO_ALONE_LOSS), n_tokens)
    try:
        ppl = math.exp(cond - alone)
    except OverflowError:
        return failed(statuses.error(statuses.NONFINITE), n_tokens)
    return Ratio(cond, alone, ppl, cond / alone, n_tokens, statuses.OK)


def combine(plan: Plan, losses: Mapping[Any, SeqLoss]) -> Ratio:
    """The score of one plan from the per-sequence losses (keyed by `Seq`)."""
    if plan.status != statuses.OK or plan.cond is None or plan.alone is None:
        return failed(plan.status)
    cond, alone = losses[plan.cond], losses[plan.alone]
    status = statuses.first_failure(cond.status, alone.status)
    if status != statuses.OK or cond.loss is None or alone.loss is None:
        return failed(status, plan.n_scored)
    return ratio(cond.loss, alone.loss, plan.n_scored)


@dataclass(frozen=True)
class PairScore:
    """Every score of one pair, as one output row (field names are the published column names)."""

    id: str
    loss_cond: float | None
    loss_alone: float | None
    ifd_ppl: float | None
    ifd_loss: float | None
    n_response_tokens: int | None
    ifd_status: str
    rloss_cond: float | None
    rloss_alone: float | None
    rifd_ppl: float | None
    rifd_loss: float | None
    n_instruction_tokens: int | None
    rifd_status: str

    @classmethod
    def build(cls, row_id: str, ifd: Ratio, rifd: Ratio) -> PairScore:
        return cls(
            row_id,
            ifd.cond, ifd.alone, ifd.ppl, ifd.loss, ifd.n_tokens, ifd.status,
            rifd.cond, rifd.alone, rifd.ppl, rifd.loss, rifd.n_tokens, rifd.status,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SCORE_COLUMNS = list(PairScore.__dataclass_fields__)
