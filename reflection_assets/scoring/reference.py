"""One-sample-at-a-time reference scorer: what the research code does, under this project's rules.

Each pass is its own forward call over the full sequence, with full logits and the model's own
loss (labels of -100 on the context), no batching, no dedupe and no cache. Benchmarks and tests
measure the engine against it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from reflection_assets.schema import Pair
from reflection_assets.scoring import statuses
from reflection_assets.scoring.metrics import PairScore, combine
from reflection_assets.scoring.scorer import ScoringConfig, plan_pairs, row_id, settings_for
from reflection_assets.scoring.sequences import Seq, SeqLoss
from reflection_assets.scoring.student import Student


def reference_loss(model, seq: Seq) -> float:
    """Mean NLL of `seq.scored` given `seq.context`, from the model's own loss on full logits."""
    device = next(model.parameters()).device
    ids = torch.tensor([list(seq.context + seq.scored)], dtype=torch.long, device=device)
    labels = ids.clone()
    labels[0, : len(seq.context)] = -100
    with torch.no_grad():
        return float(model(input_ids=ids, labels=labels).loss)


def reference_score_pairs(
    pairs: Sequence[Pair],
    student: Student,
    config: ScoringConfig = ScoringConfig(),  # noqa: B008 - a frozen dataclass, as in scorer.score_pairs
    ifd: bool = True,
    rifd: bool = True,
) -> list[PairScore]:
    """Scores of every pair, each pass run on its own (four forward calls per pair)."""
    settings = settings_for(student, config)
    scores = []
    for pair, plans in zip(pairs, plan_pairs(student, settings, pairs, ifd=ifd, rifd=rifd)):
        losses = {
            seq: SeqLoss(reference_loss(student.model, seq), statuses.OK)
            for plan in plans
            for seq in (plan.cond, plan.alone)
            if seq is not None
        }
        scores.append(PairScore.build(row_id(pair), combine(plans[0], losses), combine(plans[1], losses)))
    return scores
