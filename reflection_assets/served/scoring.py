"""`ServedLossEngine`: the in-process `LossEngine`'s interface, each sequence's loss from a vLLM server.

A sequence `(context, scored)` goes to the server as one token-id prompt; its loss is the mean
negative log-probability of the scored tokens, exactly what the in-process engine computes (in the
server's dtype). Requests run with the shared policy's concurrency; results come back in chunks
so the scorer caches them as they arrive and a crash loses at most one chunk.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence

import httpx

from reflection_assets.http_retries import CallFailed
from reflection_assets.scoring import statuses
from reflection_assets.scoring.sequences import ProgressFn, Seq, SeqLoss
from reflection_assets.scoring.student import Student
from reflection_assets.served.client import ServedStudent, mean_nll

log = logging.getLogger(__name__)
SEQUENCE_REFUSALS = frozenset({400, 413})  # vLLM answers 400 to a prompt longer than its max_model_len
REQUESTS_PER_CHUNK = 8  # x the concurrency: sequences between two progress lines / cache writes


class ServedLossEngine:
    """Scores `Seq`s over HTTP; counts requests and prompt tokens sent (the served counterpart of
    `LossEngine.tokens_processed`)."""

    dtype_name = "served"  # the server's dtype is part of its identity (the fingerprint), not known here
    device_kind = "http"

    def __init__(self, server: ServedStudent) -> None:
        self.server = server
        self.tokens_processed = 0
        self.forward_calls = 0

    async def _loss(self, client: httpx.AsyncClient, seq: Seq) -> SeqLoss:
        if not seq.context:
            return SeqLoss(None, statuses.error(statuses.EMPTY_CONTEXT))
        try:
            logprobs = await self.server.prompt_logprobs(client, seq.context + seq.scored)
        except CallFailed as exc:
            # Down or overloaded past the retries, or refusing every request (401, 403, 404, 422): stop,
            # nothing is lost. Only a 400/413 is about this one sequence.
            if exc.status not in SEQUENCE_REFUSALS:
                raise
            # A request the server refuses (longer than its max_model_len, for instance) fails alone.
            log.warning("student server refused a %d-token sequence: %s", seq.length, str(exc)[:300])
            return SeqLoss(None, statuses.error(statuses.SERVER_REFUSED))
        value = mean_nll(logprobs, len(seq.context))
        if not math.isfinite(value):
            return SeqLoss(None, statuses.error(statuses.NONFINITE))
        return SeqLoss(value, statuses.OK)

    def run(
        self, seqs: Sequence[Seq], batch_tokens: int | None = None, progress: ProgressFn | None = None
    ) -> Iterator[dict[Seq, SeqLoss]]:
        """Yield losses chunk by chunk, like `LossEngine.run` (`batch_tokens` is the server's business)."""
        del batch_tokens
        total, done = sum(seq.length for seq in seqs), 0
        # Longest first, as in process: a request the server cannot take shows up at once.
        order = sorted(seqs, key=lambda seq: -seq.length)
        concurrency = self.server.logprob_concurrency  # see client.DEFAULT_LOGPROB_CONCURRENCY
        step = max(16, REQUESTS_PER_CHUNK * concurrency)
        for start in range(0, len(order), step):
            chunk = order[start : start + step]
            results = self.server.map(self._loss, chunk, concurrency)
            self.forward_calls += len(chunk)
            sent = sum(seq.length for seq in chunk)
            self.tokens_processed += sent
            done += sent
            if progress is not None:
                progress(done, total)
            yield dict(zip(chunk, results))


def served_student(ref: str, server: ServedStudent, trust_remote_code: bool = False) -> Student:
    """A student the server scores: only the tokenizer of `ref` is loaded here. The server must serve the
    same weights (its tokenizer is compared with this one's where it offers /tokenize)."""
    from reflection_assets.model_store import load_tokenizer

    tokenizer = load_tokenizer(ref, trust_remote_code=trust_remote_code)
    server.check_tokenizer(tokenizer)
    engine = ServedLossEngine(server)
    return Student(None, tokenizer, server.fingerprint(), engine, backend=f"vLLM: {server.describe()}")
