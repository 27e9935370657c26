"""Batched loss engine: mean NLL of scored tokens, many sequences per forward pass.

Why it is fast: sequences are sorted by length and packed under a token budget (little padding);
the base model runs once per batch and the vocabulary projection -- a large share of a small
model's work -- is applied only at the positions whose next token is scored.
Why it is exact: right padding with an attention mask and explicit position ids leaves every real
token's computation as if it were alone; the loss is taken in fp32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from reflection_assets.scoring import statuses
from reflection_assets.scoring.sequences import Seq

ProgressFn = Callable[[int, int], None]  # (done, total) in non-padding tokens
DEFAULT_BATCH_TOKENS = {"cpu": 1024, "cuda": 32768}  # CPU: small batches stay in cache (measured)
HEAD_CHUNK_ROWS = 1024  # rows of the vocab projection at a time: bounds the logits' memory
BATCH_ERRORS = (RuntimeError, ValueError, IndexError)  # torch.OutOfMemoryError is a RuntimeError


@dataclass(frozen=True)
class SeqLoss:
    loss: float | None
    status: str


def default_batch_tokens(device: torch.device | str) -> int:
    return DEFAULT_BATCH_TOKENS.get(torch.device(device).type, DEFAULT_BATCH_TOKENS["cpu"])


def plan_batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Indices grouped longest first so that rows x longest length stays within `batch_tokens`.

    Longest first: an out-of-memory batch shows up at once, not at the end of a long run.
    A sequence longer than the budget gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    for index in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= batch_tokens:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


def _split_head(model: Any) -> tuple[Any, Any] | None:
    """(base model, output projection) when the model exposes them, else None."""
    base = getattr(model, "base_model", None)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if base is None or base is model or head is None:
        return None
    return base, head


class LossEngine:
    """Scores `Seq`s with one model; counts forward calls so tests can prove the cache skips work."""

    def __init__(self, model: Any) -> None:
        self.model = model
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.pad_id = 0  # any valid id: right padding is never attended to by real tokens
        self.forward_calls = 0
        self._parts: tuple[Any, Any] | None | bool = False  # False: not yet checked

    @property
    def uses_split_head(self) -> bool:
        return bool(self._head_parts())

    def _head_parts(self) -> tuple[Any, Any] | None:
        """Base + head if applying the head to gathered hidden states reproduces the model's logits.

        Checked once on a short probe, because some models post-process logits (soft-capping,
        scaling); those fall back to full logits rather than giving wrong numbers.
        """
        if self._parts is False:
            parts = _split_head(self.model)
            if parts is not None:
                vocab = int(parts[1].weight.shape[0])
                probe = torch.arange(min(8, vocab), device=self.device).unsqueeze(0)
                with torch.inference_mode():
                    full = self.model(input_ids=probe, use_cache=False).logits.float()
                    split = parts[1](parts[0](input_ids=probe, use_cache=False).last_hidden_state).float()
                tolerance = (1e-4 if self.dtype == torch.float32 else 2e-2) * max(1.0, full.abs().max().item())
                if split.shape != full.shape or (split - full).abs().max().item() > tolerance:
                    parts = None
            self._parts = parts
        return self._parts  # type: ignore[return-value]

    def _inputs(self, batch: Sequence[Seq]) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
        """Right-padded ids, mask and positions; plus (row, column, target) of every scored token."""
        width = max(seq.length for seq in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        rows: list[int] = []
        cols: list[int] = []
        targets: list[int] = []
        for row, seq in enumerate(batch):
            tokens = seq.context + seq.scored
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            mask[row, : len(tokens)] = 1
            first = len(seq.context) - 1  # the logits at position t predict token t + 1
            rows += [row] * len(seq.scored)
            cols += range(first, first + len(seq.scored))
            targets += seq.scored
        positions = torch.arange(width, dtype=torch.long).unsqueeze(0).expand(len(batch), -1)
        inputs = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
        inputs = {name: tensor.to(self.device) for name, tensor in inputs.items()}
        as_tensor = lambda values: torch.tensor(values, dtype=torch.long, device=self.device)  # noqa: E731
        return inputs, as_tensor(rows), as_tensor(cols), as_tensor(targets)

    def _token_nll(self, inputs: dict[str, torch.Tensor], rows: torch.Tensor, cols: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        parts = self._head_parts()
        if parts is None:
            logits = self.model(**inputs, use_cache=False).logits[rows, cols]
            return F.cross_entropy(logits.float(), targets, reduction="none")
        base, head = parts
        hidden = base(**inputs, use_cache=False).last_hidden_state[rows, cols]
        chunks = [
            F.cross_entropy(head(hidden[i : i + HEAD_CHUNK_ROWS]).float(), targets[i : i + HEAD_CHUNK_ROWS], reduction="none")
            for i in range(0, hidden.shape[0], HEAD_CHUNK_ROWS)
        ]
        return torch.cat(chunks)

    def forward(self, batch: Sequence[Seq]) -> list[SeqLoss]:
        """Mean NLL of each sequence's scored tokens, from one forward pass over the batch."""
        self.forward_calls += 1
        with torch.inference_mode():
            inputs, rows, cols, targets = self._inputs(batch)
            nll = self._token_nll(inputs, rows, cols, targets)
            sums = torch.zeros(len(batch), dtype=torch.float64, device=nll.device).index_add_(0, rows, nll.double())
        counts = [len(seq.scored) for seq in batch]
        return [_seq_loss(total / count) for total, count in zip(sums.tolist(), counts)]

    def _forward_or_split(self, batch: list[Seq]) -> list[SeqLoss]:
        """A failing batch is halved until the failure is pinned to single sequences (error status)."""
        try:
            return self.forward(batch)
        except BATCH_ERRORS as exc:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(batch) == 1:
                return [SeqLoss(None, statuses.error(type(exc).__name__))]
            half = len(batch) // 2
            return self._forward_or_split(batch[:half]) + self._forward_or_split(batch[half:])

    def run(self, seqs: Sequence[Seq], batch_tokens: int | None = None, progress: ProgressFn | None = None) -> Iterator[dict[Seq, SeqLoss]]:
        """Yield losses batch by batch (callers can persist them as they come); `seqs` must be unique."""
        budget = batch_tokens or default_batch_tokens(self.device)
        lengths = [seq.length for seq in seqs]
        total, done = sum(lengths), 0
        for indices in plan_batches(lengths, budget):
            batch = [seqs[i] for i in indices]
            results = self._forward_or_split(batch)
            done += sum(lengths[i] for i in indices)
            if progress is not None:
                progress(done, total)
            yield dict(zip(batch, results))


def _seq_loss(value: float) -> SeqLoss:
    if not math.isfinite(value):
        return SeqLoss(None, statuses.error(statuses.NONFINITE))
    return SeqLoss(value, statuses.OK)
