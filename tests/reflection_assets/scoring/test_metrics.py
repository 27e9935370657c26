import math

import pytest

from reflection_assets.scoring import statuses
from reflection_assets.scoring.metrics import combine, ratio
from reflection_assets.scoring.sequences import Plan, Seq, SeqLoss


def test_ratio_definitions():
    r = ratio(2.0, 2.5, 7)
    assert r.ppl == pytest.approx(math.exp(-0.5)) and r.loss == pytest.approx(0.8)
    assert (r.cond, r.alone, r.n_tokens, r.status) == (2.0, 2.5, 7, statuses.OK)


def test_zero_alone_loss_is_an_error_not_a_number():
    r = ratio(1.0, 0.0, 3)
    assert r.status == "error:zero_alone_loss" and r.ppl is None and r.loss is None


def test_overflow_is_an_error():
    assert ratio(1e6, 1.0, 3).status == "error:nonfinite"


def test_combine_propagates_plan_and_sequence_failures():
    cond, alone = Seq((1, 2), (3,)), Seq((1,), (3,))
    plan = Plan(statuses.OK, cond, alone)
    ok = combine(plan, {cond: SeqLoss(1.0, "ok"), alone: SeqLoss(2.0, "ok")})
    assert ok.status == "ok" and ok.ppl == pytest.approx(math.exp(-1.0))
    broken = combine(plan, {cond: SeqLoss(1.0, "ok"), alone: SeqLoss(None, "error:RuntimeError")})
    assert broken.status == "error:RuntimeError" and broken.ppl is None and broken.cond is None
    assert combine(Plan(statuses.PROMPT_TOO_LONG), {}).status == statuses.PROMPT_TOO_LONG


@pytest.mark.parametrize(
    "value, status, passes",
    [
        (0.5, "ok", True),
        (1.0, "ok", False),
        (None, "ok", False),
        (0.0, "error:x", False),
        (0.1, "prompt_too_long", False),
    ],
)
def test_only_ok_scores_pass_a_threshold(value, status, passes):
    assert statuses.passes_below(value, status, 1.0) is passes
