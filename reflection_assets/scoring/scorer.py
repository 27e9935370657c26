"""Score pairs: plan the sequences, dedupe them, take what the cache has, run the engine on the rest.

This is the one entry point the assets and the `score` command share, so both give the same
numbers for the same settings.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
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
# A write's cost grows with the table (DuckDB checkpoints the file, index included, when the short connection
# closes: 0.07 s a write when empty, 0.4 s at 150k rows), so losses are written once a chunk (about 4 passes a
# row), or every CACHE_FLUSH_SECONDS where a chunk takes longer; more often made 50k rows 35 % slower a row.
CACHE_FLUSH_ROWS = 16384
# Rows planned, scored and turned into scores at a time: tokens and losses of one chunk in memory, never the dataset's.
SCORE_CHUNK_ROWS = 4096
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


class _ChunkProgress:
    """One progress line over every chunk: tokens done so far, and a total that counts the chunks still to come
    as the size of the current one; the last line's total is exact (the tokens that needed a forward pass)."""

    def __init__(self, progress: ProgressFn | None, chunks: int) -> None:
        self.progress, self.chunks = progress, chunks
        self.before = 0  # tokens computed in the finished chunks
        self.chunk_total = 0
        self.reported: int | None = None  # the last total passed on

    def start(self, index: int) -> ProgressFn:
        self.chunk_total = 0

        def report(done: int, total: int) -> None:
            self.chunk_total = total
            self._report(self.before + done, self.before + total * (self.chunks - index))

        return report

    def finish(self) -> None:
        self.before += self.chunk_total

    def close(self) -> None:
        if self.reported is not None and self.reported != self.before:  # later chunks were cached: say the real total
            self._report(self.before, self.before)

    def _report(self, done: int, total: int) -> None:
        self.reported = total
        if self.progress is not None:
            self.progress(done, total)


def score_chunks(
    pairs: Sequence[Pair],
    student: Student,
    config: ScoringConfig = DEFAULT_CONFIG,
    *,
    ifd: bool = True,
    rifd: bool = True,
    cache: StudentScoreCache | None = None,
    progress: ProgressFn | None = None,
    chunk_rows: int = SCORE_CHUNK_ROWS,
) -> Iterator[list[PairScore]]:
    """The scores of `pairs` chunk by chunk, in input order; each chunk's losses are in the cache before it is yielded.

    Tokens, plans and losses live for one chunk only, so memory stays flat at any dataset size; a sequence
    shared with an earlier chunk is read from the cache (or, without one, scored again).
    """
    settings = settings_for(student, config)
    chunks = range(0, len(pairs), chunk_rows)
    tracker = _ChunkProgress(progress, len(chunks))
    for index, start in enumerate(chunks):
        part = pairs[start : start + chunk_rows]
        plans = plan_pairs(student, settings, part, ifd=ifd, rifd=rifd)
        seqs = unique_sequences(plans)
        losses = sequence_losses(student, settings, seqs, config.batch_tokens, cache, tracker.start(index))
        tracker.finish()
        yield [
            PairScore.build(row_id(pair), combine(ifd_plan, losses), combine(rifd_plan, losses))
            for pair, (ifd_plan, rifd_plan) in zip(part, plans)
        ]
    tracker.close()


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
    chunks = score_chunks(pairs, student, config, ifd=ifd, rifd=rifd, cache=cache, progress=progress)
    return [score for chunk in chunks for score in chunk]


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

    chunks = score_chunks(pairs, student, config, ifd=ifd, rifd=rifd, cache=cache, progress=progress)
    # Nullable dtypes: a missing score is NULL in the warehouse, never NaN or 0.
    def dtype(name: str) -> str:
        if name in ("id", "ifd_status", "rifd_status"):
            return "string"
        return "Int64" if name.startswith("n_") else "Float64"

    dtypes = {name: dtype(name) for name in SCORE_COLUMNS}
    frames = [pd.DataFrame([score.to_dict() for score in chunk], columns=SCORE_COLUMNS).astype(dtypes)
              for chunk in chunks]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SCORE_COLUMNS).astype(dtypes)
    return frame.rename(columns={"id": "row_id"})
