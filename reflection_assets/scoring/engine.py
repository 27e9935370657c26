"""Batched loss engine: mean NLL of scored tokens, many sequences per forward pass.

Why it is fast: sequences are sorted by length and packed under a token budget (little padding);
the base model runs once per batch and the vocabulary projection -- a large share of a small
model's work -- is applied only at the positions whose next token is scored; a prompt prefix that
many sequences share (the template's system turn) runs once and its keys and values are reused.
Why it is exact: right padding with an attention mask and explicit position ids leaves every real
token's computation as if it were alone; a causal model computes a shared prefix the same way in
every sequence (checked once per model on a probe); the loss is taken in fp32.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from reflection_assets.devices import free_cuda_memory, is_out_of_memory
from reflection_assets.scoring import statuses
from reflection_assets.scoring.prefixes import prefix_groups
from reflection_assets.scoring.sequences import ProgressFn, Seq, SeqLoss  # noqa: F401 - re-exported
from reflection_assets.scoring.settings import DEFAULT_BATCH_TOKENS

HEAD_CHUNK_ROWS = 1024  # rows of the vocab projection at a time: bounds the logits' memory
BATCH_ERRORS = (RuntimeError, ValueError, IndexError)  # torch.OutOfMemoryError is a RuntimeError


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


@dataclass(frozen=True)
class Prefix:
    """Keys and values of a shared prefix, one (key, value) per layer, batch size 1."""

    length: int
    layers: tuple[tuple[torch.Tensor, torch.Tensor], ...]

    def cache_for(self, rows: int, config: Any) -> Any:
        from transformers import DynamicCache

        # expand() is a view; the cache's first update concatenates, so the prefix is never written.
        data = [(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in self.layers]
        return DynamicCache(ddp_cache_data=data, config=config)


class LossEngine:
    """Scores `Seq`s with one model; counts forward calls and tokens so tests can prove the cache skips work.

    `share_prefixes=False` turns prefix reuse off (for comparison; results agree either way).
    """

    def __init__(self, model: Any, share_prefixes: bool = True) -> None:
        self.model = model
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.pad_id = 0  # any valid id: right padding is never attended to by real tokens
        self.share_prefixes = share_prefixes
        self.forward_calls = 0
        self.prefix_calls = 0
        self.tokens_processed = 0  # tokens actually run through the model (MFU, and what sharing saves)
        self._parts: tuple[Any, Any] | None | bool = False  # False: not yet checked
        self._prefix_ok: bool | None = None

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    @property
    def device_kind(self) -> str:
        return self.device.type

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

    def _inputs(
        self, batch: Sequence[Seq], skip: int = 0
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
        """Right-padded ids, mask and positions after the first `skip` tokens (a shared prefix whose
        keys and values come from a cache); plus (row, column, target) of every scored token."""
        width = max(seq.length for seq in batch) - skip
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), skip + width), dtype=torch.long)
        rows: list[int] = []
        cols: list[int] = []
        targets: list[int] = []
        for row, seq in enumerate(batch):
            tokens = (seq.context + seq.scored)[skip:]
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            mask[row, : skip + len(tokens)] = 1
            first = len(seq.context) - 1 - skip  # the logits at position t predict token t + 1
            rows += [row] * len(seq.scored)
            cols += range(first, first + len(seq.scored))
            targets += seq.scored
        positions = torch.arange(skip, skip + width, dtype=torch.long).unsqueeze(0).expand(len(batch), -1)
        inputs = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
        inputs = {name: tensor.to(self.device) for name, tensor in inputs.items()}
        as_tensor = lambda values: torch.tensor(values, dtype=torch.long, device=self.device)  # noqa: E731
        return inputs, as_tensor(rows), as_tensor(cols), as_tensor(targets)

    def _token_nll(
        self,
        inputs: dict[str, torch.Tensor],
        rows: torch.Tensor,
        cols: torch.Tensor,
        targets: torch.Tensor,
        cache: Any = None,
    ) -> torch.Tensor:
        parts = self._head_parts()
        extra = {"past_key_values": cache, "use_cache": True} if cache is not None else {"use_cache": False}
        if parts is None:
            logits = self.model(**inputs, **extra).logits[rows, cols]
            return F.cross_entropy(logits.float(), targets, reduction="none")
        base, head = parts
        hidden = base(**inputs, **extra).last_hidden_state[rows, cols]
        chunks = [
            F.cross_entropy(
                head(hidden[i : i + HEAD_CHUNK_ROWS]).float(), targets[i : i + HEAD_CHUNK_ROWS], reduction="none"
            )
            for i in range(0, hidden.shape[0], HEAD_CHUNK_ROWS)
        ]
        return torch.cat(chunks)

    def forward(self, batch: Sequence[Seq], prefix: Prefix | None = None) -> list[SeqLoss]:
        """Mean NLL of each sequence's scored tokens, from one forward pass over the batch.

        With `prefix`, every sequence starts with those tokens and only the rest is computed.
        """
        self.forward_calls += 1
        skip = prefix.length if prefix is not None else 0
        with torch.inference_mode():
            inputs, rows, cols, targets = self._inputs(batch, skip)
            cache = prefix.cache_for(len(batch), self.model.config) if prefix is not None else None
            nll = self._token_nll(inputs, rows, cols, targets, cache)
            sums = torch.zeros(len(batch), dtype=torch.float64, device=nll.device).index_add_(0, rows, nll.double())
        self.tokens_processed += sum(seq.length - skip for seq in batch)
        counts = [len(seq.scored) for seq in batch]
        return [_seq_loss(total / count) for total, count in zip(sums.tolist(), counts)]

    def shared_prefix(self, tokens: Sequence[int]) -> Prefix | None:
        """Keys and values of `tokens`, or None when this model's cache cannot be shared safely."""
        if not self._can_share_prefixes():
            return None
        try:
            return self._compute_prefix(tokens)
        except BATCH_ERRORS as exc:  # the group is then scored in full, like any other sequence
            out_of_memory = is_out_of_memory(exc)
        if out_of_memory:
            free_cuda_memory()
        return None

    def _compute_prefix(self, tokens: Sequence[int]) -> Prefix | None:
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        self.prefix_calls += 1
        parts = self._head_parts()
        runner = parts[0] if parts is not None else self.model  # the base alone: no logits needed here
        with torch.inference_mode():
            ids = torch.tensor([list(tokens)], dtype=torch.long, device=self.device)
            cache = runner(input_ids=ids, use_cache=True).past_key_values
        self.tokens_processed += len(tokens)
        # Only plain full-attention layers: sliding windows, recurrent or quantized states are not
        # a prefix that can be copied into a batch as is.
        if not isinstance(cache, DynamicCache) or not all(type(layer) is DynamicLayer for layer in cache.layers):
            return None
        return Prefix(len(tokens), tuple((layer.keys, layer.values) for layer in cache.layers))

    def _can_share_prefixes(self) -> bool:
        """Whether reusing a prefix's keys and values reproduces the full pass (checked once, on a probe)."""
        if self._prefix_ok is None:
            ok = False
            if self.share_prefixes:
                vocab = int(self.model.get_input_embeddings().weight.shape[0])
                probe = [Seq(tuple(i % vocab for i in range(1, 9)), (9 % vocab, 10 % vocab, 11 % vocab))]
                counters = self.forward_calls, self.prefix_calls, self.tokens_processed
                try:
                    shared = self._compute_prefix(probe[0].context[:5])
                    if shared is not None:
                        full, reused = self.forward(probe)[0], self.forward(probe, shared)[0]
                        tolerance = 1e-4 if self.dtype == torch.float32 else 2e-2
                        ok = (
                            full.loss is not None
                            and reused.loss is not None
                            and abs(full.loss - reused.loss) <= tolerance * max(1.0, abs(full.loss))
                        )
                except (*BATCH_ERRORS, TypeError, AttributeError, ImportError):
                    ok = False
                finally:  # the probe is not work done
                    self.forward_calls, self.prefix_calls, self.tokens_processed = counters
            self._prefix_ok = ok
        return self._prefix_ok

    def _forward_or_split(self, batch: list[Seq], prefix: Prefix | None = None) -> list[SeqLoss]:
        """A failing batch is halved until the failure is pinned to single sequences (error status).

        The retry runs after the `except` block, not in it: there the exception's traceback still
        holds the failed forward's activations, which on a GPU would stay allocated during the retry.
        """
        try:
            return self.forward(batch, prefix)
        except BATCH_ERRORS as exc:
            error, out_of_memory = type(exc).__name__, is_out_of_memory(exc)
        if out_of_memory or self.device.type == "cuda":  # on CUDA any failure may leave blocks behind
            free_cuda_memory()
        if len(batch) == 1:
            if prefix is not None:  # the prefix path itself may be what fails: one try without it
                return self._forward_or_split(batch)
            return [SeqLoss(None, statuses.error(error))]
        half = len(batch) // 2
        return self._forward_or_split(batch[:half], prefix) + self._forward_or_split(batch[half:], prefix)

    def run(
        self, seqs: Sequence[Seq], batch_tokens: int | None = None, progress: ProgressFn | None = None
    ) -> Iterator[dict[Seq, SeqLoss]]:
        """Yield losses batch by batch (callers can persist them as they come); `seqs` must be unique.

        Sequences that share a long enough prompt prefix are batched together after it; the rest
        are batched as they are. Each group's prefix is computed once and dropped after the group.
        """
        budget = batch_tokens or default_batch_tokens(self.device)
        lengths = [seq.length for seq in seqs]
        total, done = sum(lengths), 0
        groups = prefix_groups([seq.context for seq in seqs]) if self.share_prefixes and len(seqs) > 1 else []
        shared = [g for g in groups if g.length > 0]
        if shared and not self._can_share_prefixes():
            shared = []
        in_groups = {i for g in shared for i in g.members}
        plain = [i for i in range(len(seqs)) if i not in in_groups]
        work: list[tuple[int, list[int]]] = [(0, plain)] + [(g.length, list(g.members)) for g in shared]
        for skip, members in work:
            if not members:
                continue
            prefix = self.shared_prefix(seqs[members[0]].context[:skip]) if skip else None
            skip = prefix.length if prefix is not None else 0
            for positions in plan_batches([lengths[i] - skip for i in members], budget):
                indices = [members[p] for p in positions]
                batch = [seqs[i] for i in indices]
                results = self._forward_or_split(batch, prefix)
                done += sum(lengths[i] for i in indices)
                if progress is not None:
                    progress(done, total)
                yield dict(zip(batch, results))
            del prefix


def _seq_loss(value: float) -> SeqLoss:
    if not math.isfinite(value):
        return SeqLoss(None, statuses.error(statuses.NONFINITE))
    return SeqLoss(value, statuses.OK)
