"""Score pairs: plan the sequences, dedupe them, take what the cache has, run the engine on the rest.

This is the one entry point the assets and the `score` command share, so both give the same
numbers for the same settings.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from reflection_assets.schema import Pair
from reflection_assets.scoring import statuses
from reflection_assets.scoring.metrics import SCORE_COLUMNS, PairScore, combine
from reflection_assets.scoring.sequences import (
    Plan,
    ProgressFn,
    PromptSettings,
    Seq,
    SeqLoss,
    plan_ifd,
    plan_rifd,
    resolve_settings,
)
from reflection_assets.scoring.settings import ScoringConfig  # owned there (light: the CLI reads it)
from reflection_assets.scoring.student import Student
from reflection_assets.scoring.templates import template_hash

if TYPE_CHECKING:
    import pandas as pd

    # The cache is optional and brings DuckDB with it: scoring runs without it (a GPU box with torch
    # alone, the GPU check), so its module is imported only where a cache is used.
    from reflection_assets.scoring.cache import CacheScope, StudentScoreCache

CACHE_FLUSH_SECONDS = 30.0  # a crash loses at most this much scoring work
CACHE_FLUSH_ROWS = 2048
DEFAULT_CONFIG = ScoringConfig()


def settings_for(student: Student, config: ScoringConfig) -> PromptSettings:
    return resolve_settings(student.tokenizer, config.template, config.start_token, config.max_length)


def cache_scope(student: Student, settings: PromptSettings) -> CacheScope:
    from reflection_assets.scoring.cache import CacheScope

    return CacheScope(
        model_fingerprint=student.fingerprint,
        template=settings.template,
        template_hash=template_hash(student.tokenizer, settings.template, settings.start_token),
        start_token=settings.start_token,
        max_length=settings.max_length,
        dtype=student.dtype_name,
        device_kind=student.device_kind,
    )


def plan_pairs(
    student: Student, settings: PromptSettings, pairs: Sequence[Pair], ifd: bool = True, rifd: bool = True
) -> list[tuple[Plan, Plan]]:
    skipped = Plan(statuses.SKIPPED)
    return [
        (
            plan_ifd(student.tokenizer, settings, pair) if ifd else skipped,
            plan_rifd(student.tokenizer, settings, pair) if rifd else skipped,
        )
        for pair in pairs
    ]


def unique_sequences(plans: Iterable[tuple[Plan, Plan]]) -> list[Seq]:
    """Every distinct (context, scored) once: a shared response or instruction is scored once."""
    seen: dict[Seq, None] = {}
    for pair_plans in plans:
        for plan in pair_plans:
            for seq in (plan.cond, plan.alone):
                if seq is not None:
                    seen.setdefault(seq)
    return list(seen)


class _CacheWriter:
    """Buffers fresh losses and writes them in short batches (a connection never spans a forward pass)."""

    def __init__(self, cache: StudentScoreCache, scope: CacheScope, keys: dict[Seq, str]) -> None:
        self.cache, self.scope, self.keys = cache, scope, keys
        self.pending: dict[str, tuple[float, int]] = {}
        self.last = time.monotonic()

    def add(self, results: dict[Seq, SeqLoss]) -> None:
        for seq, result in results.items():
            if result.status == statuses.OK and result.loss is not None:  # errors are never cached
                self.pending[self.keys[seq]] = (result.loss, len(seq.scored))
        if len(self.pending) >= CACHE_FLUSH_ROWS or time.monotonic() - self.last >= CACHE_FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        self.cache.put(self.scope, self.pending)
        self.pending, self.last = {}, time.monotonic()


def sequence_losses(
    student: Student,
    settings: PromptSettings,
    seqs: Sequence[Seq],
    batch_tokens: int | None = None,
    cache: StudentScoreCache | None = None,
    progress: ProgressFn | None = None,
) -> dict[Seq, SeqLoss]:
    """Loss of every sequence: cached ones read in one batch, the rest computed and written back."""
    losses: dict[Seq, SeqLoss] = {}
    writer = None
    if cache is not None:
        from reflection_assets.scoring.cache import sequence_key

        scope = cache_scope(student, settings)
        scope_key = scope.key()
        keys = {seq: sequence_key(scope_key, seq) for seq in seqs}
        stored = cache.get(list(keys.values()))
        losses = {seq: SeqLoss(stored[key], statuses.OK) for seq, key in keys.items() if key in stored}
        writer = _CacheWriter(cache, scope, keys)
    todo = [seq for seq in seqs if seq not in losses]
    try:
        for results in student.engine.run(todo, batch_tokens, progress):
            losses.update(results)
            if writer is not None:
                writer.add(results)
    finally:
        if writer is not None:
            writer.flush()
    return losses


def row_id(pair: Pair) -> str:
    return pair.row_id or pair.content_id()


def score_pairs(
    pairs: Sequence[Pair],
    student: Student,
    config: ScoringConfig = DEFAULT_CONFIG,
    *,
    ifd: bool = True,
    rifd: bool = True,
    cache: StudentScoreCache | None = None,
    progress: ProgressFn | None = None,
) -> list[PairScore]:
    """IFD and/or r-IFD of every pair, in input order; a score that was not asked for is `skipped`."""
    settings = settings_for(student, config)
    plans = plan_pairs(student, settings, pairs, ifd=ifd, rifd=rifd)
    losses = sequence_losses(student, settings, unique_sequences(plans), config.batch_tokens, cache, progress)
    return [
        PairScore.build(row_id(pair), combine(ifd_plan, losses), combine(rifd_plan, losses))
        for pair, (ifd_plan, rifd_plan) in zip(pairs, plans)
    ]


def scores_frame(
    pairs: Sequence[Pair],
    student: Student,
    config: ScoringConfig = DEFAULT_CONFIG,
    *,
    ifd: bool = True,
    rifd: bool = True,
    cache: StudentScoreCache | None = None,
    progress: ProgressFn | None = None,
) -> pd.DataFrame:
    """Per-pair score rows as a DataFrame (`id` renamed `row_id`, the warehouse's row key)."""
    import pandas as pd

    scores = score_pairs(pairs, student, config, ifd=ifd, rifd=rifd, cache=cache, progress=progress)
    frame = pd.DataFrame([score.to_dict() for score in scores], columns=SCORE_COLUMNS)
    # Nullable dtypes: a missing score is NULL in the warehouse, never NaN or 0.
    def dtype(name: str) -> str:
        if name in ("id", "ifd_status", "rifd_status"):
            return "string"
        return "Int64" if name.startswith("n_") else "Float64"

    dtypes = {name: dtype(name) for name in SCORE_COLUMNS}
    return frame.astype(dtypes).rename(columns={"id": "row_id"})
