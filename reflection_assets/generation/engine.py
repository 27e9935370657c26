"""The generation engine: greedy continuation of many token-id prompts, each optionally under a LoRA adapter.

One batch runs as one decoding loop over a key/value cache that every row keeps to the end:
- the prompt prefix common to the batch (a chat template's system turn) is computed once per adapter
  and copied into every row's cache;
- a request may continue after its step ends (`continuation`): it names the full token sequence to
  go on from; the cached tokens it shares with that sequence are kept, the rest are masked out and
  only the new tokens are fed (guided plans: the appended markers);
- rows are right-aligned in each forward so the last column holds every row's newest token
  (`logits_to_keep=1`: one vocabulary projection per row, never one per prompt token); the holes this
  leaves are masked, and positions are explicit, so each row computes as if it were alone;
- finished rows leave the batch at once (their cache rows are dropped), and waiting requests take
  their places (continuous batching): joining rows are prefilled on their own, from the prompt prefix
  every request shares, then their cache is appended to the running one; columns no row attends to
  any more are dropped now and then;
- mixed adapters go through PEFT's `adapter_names=` (`"__base__"` for the base model).

On CUDA the batch budget follows the free memory and the model's key/value cache size
(`devices.generation_token_budget`); a batch that still runs out of memory is halved until it fits.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from reflection_assets.devices import free_cuda_memory, generation_token_budget, is_out_of_memory
from reflection_assets.generation.cache import keep_columns, merge_caches, new_cache, supports_growing_cache
from reflection_assets.generation.peft_hooks import cleaned_on_failure
from reflection_assets.generation.requests import (  # noqa: F401 - re-exported: the engine's own vocabulary
    BASE_ADAPTER,
    Continuation,
    GenerationRequest,
    NextStep,
    StepResult,
)
from reflection_assets.generation.stops import StopStrings, min_new_suppressed_ids, stop_token_ids
from reflection_assets.scoring.engine import plan_batches

MIN_SHARED_PREFIX = 8  # shorter common prefixes are not worth a separate pass
FEED_ONE_BY_ONE = 16  # pending tokens up to this are fed one per step, beside the other rows' decoding
# Rows join a running batch in groups of at least this share of it: each join copies the whole cache.
JOIN_SHARE = 0.25
DEAD_COLUMNS = 64  # columns no row attends to are dropped once there are this many (and a quarter of all)


@dataclass(frozen=True)
class GenerationOutput:
    text: str  # the last step's text, special tokens removed
    token_ids: tuple[int, ...]  # the last step's tokens (an end token included)
    prompt_tokens: int  # context length summed over the request's steps
    new_tokens: int  # tokens generated over all steps
    finish_reason: str  # "stop" | "length" (of the last step)
    steps: int = 1


BatchDone = Callable[[list[int], list[GenerationOutput]], None]  # (request indices, their outputs)
Admit = Callable[[int], bool]  # asked as a request is about to start; False leaves it without an output


@dataclass
class EngineStats:
    """Work done since the engine was made; tests and benchmarks read it."""

    forward_calls: int = 0
    prefill_tokens: int = 0  # prompt, marker and re-tokenized tokens fed (real tokens)
    decode_tokens: int = 0  # generated tokens fed back
    padding_tokens: int = 0  # holes in right-aligned forwards
    prefix_tokens: int = 0  # shared-prefix tokens computed (once per batch and adapter)
    prefix_tokens_reused: int = 0  # prompt tokens copied from a shared prefix instead of computed
    rollback_tokens: int = 0  # cached tokens masked out because re-tokenizing a step changed them
    generated_tokens: int = 0
    out_of_memory_splits: int = 0  # batches that ran out of memory and were halved (their work is counted too)
    joins: int = 0  # groups of rows that joined a running batch
    compactions: int = 0  # times dead cache columns were dropped

    @property
    def computed_tokens(self) -> int:
        return self.prefill_tokens + self.decode_tokens + self.padding_tokens + self.prefix_tokens


@dataclass
class _Row:
    index: int
    adapter: str
    pending: list[int]  # fed before the next choice
    max_new: int
    min_new: int
    stop: tuple[str, ...]
    continuation: Continuation | None
    prompt_tokens: int
    ids: list[int] = field(default_factory=list)  # tokens in the cache, in order
    columns: list[int] = field(default_factory=list)  # the cache column of each
    generated: list[int] = field(default_factory=list)  # this step's tokens
    new_tokens: int = 0
    steps: int = 1
    output: GenerationOutput | None = None


class GenerationOutOfMemoryError(RuntimeError):
    """A request that runs out of memory even alone, or a batch that cannot be halved (it has continuations)."""


def default_threads() -> int:
    """OMP_NUM_THREADS when set (the usual way to share a machine), else the cores this process may use."""
    configured = os.environ.get("OMP_NUM_THREADS", "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    try:
        return len(os.sched_getaffinity(0))  # cgroup/affinity aware, unlike os.cpu_count()
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def common_prefix(sequences: Sequence[Sequence[int]]) -> int:
    first = sequences[0]
    n = min(len(s) for s in sequences)
    for i in range(n):
        token = first[i]
        if any(s[i] != token for s in sequences):
            return i
    return n


class GenerationEngine:
    """Greedy generation for one loaded model (a PeftModel serves several adapters in one batch)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        batch_tokens: int | None = None,
        num_threads: int | None = None,
        share_prefix: bool = True,
        continuous: bool = True,
    ) -> None:
        self.model = model.eval()  # PEFT's adapter_names requires eval mode
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        threads = num_threads or default_threads()
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        if self.device.type == "cuda":
            use_sdpa(model)
        self.batch_tokens = batch_tokens or generation_token_budget(model, self.device)
        self.enders = stop_token_ids(model, tokenizer)
        # Before a request's min_new_tokens: masked as generate masks them (any other ender is kept, not ending).
        self.min_new_masked = min_new_suppressed_ids(model)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else (min(self.enders) if self.enders else 0)
        self.stop_strings = StopStrings(tokenizer, self.pad_id)
        self.is_peft = hasattr(model, "peft_config")
        self.share_prefix = share_prefix and supports_growing_cache(model)
        # Joining rows need the growing cache's layout (sliding windows keep their own caches).
        self.continuous = continuous and supports_growing_cache(model)
        self.stats = EngineStats()
        self._admitted: set[int] = set()  # requests `admit` said yes to in the current generate_continuous

    # -- public API ------------------------------------------------------------------------------

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        on_batch: BatchDone | None = None,
        admit: Admit | None = None,
    ) -> list[GenerationOutput | None]:
        """Greedy outputs, one per request, in order (None for a request `admit` refused).

        With `continuous` (the default where the cache allows it) one running batch takes every
        request: see `generate_continuous`. Otherwise batches run one after another, as follows.

        `on_batch(indices, outputs)` is called as each batch finishes, so a caller can save its
        outputs before the next batch starts: a killed process then loses only the batch in flight.
        A batch that runs out of memory is halved and its halves run in its place (each reported
        once, when it finishes); the budget drops to half that batch's size and the batches not yet
        started are planned again under it (the estimate was too high: they would fail too). A single
        request that runs out raises GenerationOutOfMemoryError.
        """
        if self.continuous and len(requests) > 1:
            return self.generate_continuous(requests, on_batch, admit)
        outputs: list[GenerationOutput | None] = [None] * len(requests)
        lengths = [r.planned_length() for r in requests]
        todo = self.plan(requests)[::-1]  # a stack: the next batch last
        while todo:
            batch = todo.pop()
            if admit is not None:
                batch = [i for i in batch if admit(i)]
                if not batch:
                    continue
            done = self._run_or_none([requests[i] for i in batch])
            if done is None:
                self.batch_tokens = max(1, min(self.batch_tokens, len(batch) * max(lengths[i] for i in batch) // 2))
                rest = [i for later in reversed(todo) for i in later]
                replanned = [[rest[k] for k in b] for b in self.plan_lengths([lengths[i] for i in rest])]
                half = len(batch) // 2
                todo = [*replanned[::-1], batch[half:], batch[:half]]
                continue
            for i, output in zip(batch, done):
                outputs[i] = output
            if on_batch is not None:
                on_batch(batch, done)
        return outputs

    def generate_continuous(
        self,
        requests: Sequence[GenerationRequest],
        on_batch: BatchDone | None = None,
        admit: Admit | None = None,
    ) -> list[GenerationOutput | None]:
        """Every request through one running batch: a row that finishes leaves it and the next waiting
        requests (longest first) take its place while rows x longest planned length fits the budget.

        `on_batch` is called after each step in which rows finished. A batch that runs out of memory
        is started again from its waiting rows under half the budget (rows already finished are kept);
        one with continuations in flight cannot be, and raises GenerationOutOfMemoryError.
        """
        outputs: list[GenerationOutput | None] = [None] * len(requests)
        lengths = [r.planned_length() for r in requests]
        waiting = deque(sorted(range(len(requests)), key=lambda i: (-lengths[i], i)))
        prompts = [r.prompt_ids for r in requests]
        shared = min(common_prefix(prompts), min(len(p) for p in prompts) - 1) if prompts else 0
        prefixes: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}  # per adapter, for this call
        self._admitted = set()
        while waiting:
            in_flight = self._run_continuous(requests, lengths, waiting, outputs, on_batch, admit, shared, prefixes)
            if not in_flight:
                break
            self.stats.out_of_memory_splits += 1
            free_cuda_memory()
            self.batch_tokens = max(1, min(self.batch_tokens, len(in_flight) * max(lengths[i] for i in in_flight) // 2))
            waiting.extendleft(sorted(in_flight, key=lambda i: (lengths[i], -i)))  # longest first again
        return outputs

    def _run_continuous(
        self,
        requests: Sequence[GenerationRequest],
        lengths: list[int],
        waiting: deque[int],
        outputs: list[GenerationOutput | None],
        on_batch: BatchDone | None,
        admit: Admit | None,
        shared: int,
        prefixes: dict[str, list[tuple[torch.Tensor, torch.Tensor]]],
    ) -> list[int]:
        """The running batch until nothing waits; [] when done, else the rows in flight when memory ran out."""
        active: list[_Row] = []
        cache: Any = None
        mask = torch.zeros((0, 0), dtype=torch.long, device=self.device)
        failed: list[int] = []
        rows: list[_Row] = []  # a joining group until it is in the batch
        try:
            with torch.inference_mode():
                while waiting or active:
                    joining = self._joining(active, waiting, lengths, admit)
                    if joining:
                        rows = [self._row(i, requests[i]) for i in joining]
                        sub_cache, sub_mask = self._start(rows, shared, prefixes)
                        width = max(len(row.pending) for row in rows)
                        sub_mask = self._step(rows, sub_cache, sub_mask, width=width)  # prefill + first choice
                        active, cache, mask = self._join(active, cache, mask, rows, sub_cache, sub_mask)
                        rows = []
                        self.stats.joins += 1
                    elif active:
                        mask = self._step(active, cache, mask)
                    active, mask = self._leave(active, cache, mask, outputs, on_batch)
                    if active:
                        cache, mask = self._compact(active, cache, mask)
        except RuntimeError as exc:
            if not is_out_of_memory(exc):
                raise
            in_flight = [row for row in [*active, *rows] if row.output is None]
            if len(in_flight) <= 1:  # it ran alone: halving cannot help
                raise GenerationOutOfMemoryError(
                    f"out of memory generating one request alone; shorten the prompt or max_new_tokens, "
                    f"or free the device: {exc}"
                ) from exc
            if any(row.continuation is not None for row in in_flight):
                raise GenerationOutOfMemoryError(
                    f"out of memory in a running batch with continuations, which cannot be rerun from the "
                    f"start; give a smaller batch_tokens: {exc}"
                ) from exc
            failed = [row.index for row in in_flight]
        return failed  # out of the except block: its traceback no longer holds the batch's cache

    def _joining(self, active: list[_Row], waiting: deque[int], lengths: list[int], admit: Admit | None) -> list[int]:
        """The waiting requests that join now: those that fit (rows x longest planned length within the
        budget), once they are at least JOIN_SHARE of the batch or all that wait (a join copies the
        whole cache). `admit` is asked for each as it is taken."""
        longest = max((lengths[row.index] for row in active), default=0)
        count = 0
        for candidate in waiting:
            longer = max(longest, lengths[candidate])
            if (active or count) and (len(active) + count + 1) * longer > self.batch_tokens:
                break
            count, longest = count + 1, longer
        if not count or (active and count < len(waiting) and count < JOIN_SHARE * (len(active) + count)):
            return []
        taken = [waiting.popleft() for _ in range(count)]
        joining = [i for i in taken if admit is None or i in self._admitted or admit(i)]
        self._admitted.update(joining)  # a row run again after an out-of-memory is not asked twice
        return joining

    def _row(self, index: int, request: GenerationRequest) -> _Row:
        return _Row(
            index,
            request.adapter or BASE_ADAPTER,
            list(request.prompt_ids),
            request.max_new_tokens,
            request.min_new_tokens,
            tuple(request.stop),
            request.continuation,
            len(request.prompt_ids),
        )

    def _run_or_none(self, requests: list[GenerationRequest]) -> list[GenerationOutput] | None:
        """run_batch's outputs, or None when the batch ran out of memory and may be halved.

        None is returned after the `except` block and after freeing memory: inside the block the
        exception's traceback still holds the failed batch's cache and activations.
        """
        try:
            return self.run_batch(requests)
        except RuntimeError as exc:
            if not is_out_of_memory(exc):
                raise
            if len(requests) == 1:
                raise GenerationOutOfMemoryError(
                    f"out of memory generating one request alone ({requests[0].planned_length()} tokens planned); "
                    f"shorten the prompt or max_new_tokens, or free the device: {exc}"
                ) from exc
            if any(r.continuation is not None for r in requests):  # a continuation keeps state: no rerun
                raise GenerationOutOfMemoryError(
                    f"out of memory in a batch of {len(requests)} requests with continuations, which cannot be "
                    f"rerun from the start; give a smaller batch_tokens: {exc}"
                ) from exc
        self.stats.out_of_memory_splits += 1
        free_cuda_memory()
        return None

    def plan(self, requests: Sequence[GenerationRequest]) -> list[list[int]]:
        """Indices in batches of similar length whose rows x longest length fits the token budget."""
        return self.plan_lengths([r.planned_length() for r in requests])

    def plan_lengths(self, lengths: Sequence[int]) -> list[list[int]]:
        """Batches for rows of these planned lengths (prompt + new tokens), longest first."""
        return plan_batches(lengths, self.batch_tokens)

    def run_batch(self, requests: Sequence[GenerationRequest]) -> list[GenerationOutput]:
        """One decoding loop over `requests` (see the module docstring)."""
        if not requests:
            return []
        for request in requests:
            if not request.prompt_ids:
                raise ValueError("a generation request needs at least one prompt token")
            if request.adapter is not None and not self.is_peft:
                raise ValueError(f"adapter {request.adapter!r} requested, but the model is not a PeftModel")
        rows = [
            _Row(
                i,
                r.adapter or BASE_ADAPTER,
                list(r.prompt_ids),
                r.max_new_tokens,
                r.min_new_tokens,
                tuple(r.stop),
                r.continuation,
                len(r.prompt_ids),
            )
            for i, r in enumerate(requests)
        ]
        with torch.inference_mode():
            cache, mask = self._start(rows)
            active = rows
            while active:
                mask = self._step(active, cache, mask)
                keep = [b for b, row in enumerate(active) if row.output is None]
                if len(keep) < len(active):
                    if keep:
                        index = torch.tensor(keep, device=self.device)
                        cache.batch_select_indices(index)
                        mask = mask[index]
                    active = [active[b] for b in keep]
        return [row.output for row in rows if row.output is not None]

    # -- the loop --------------------------------------------------------------------------------

    def _start(
        self,
        rows: list[_Row],
        shared: int | None = None,
        prefixes: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] | None = None,
    ) -> tuple[Any, torch.Tensor]:
        """A cache holding the batch's shared prompt prefix (computed once per adapter), and its mask.

        `shared` (with `prefixes`, the computed prefixes by adapter): a prefix length every row is known
        to share, whose keys and values outlive this batch (continuous batching's joins reuse them).
        """
        cache = new_cache(self.model)
        if shared is None:
            shared = common_prefix([row.pending for row in rows])
            shared = min(shared, min(len(row.pending) for row in rows) - 1)  # each row feeds >= 1 token itself
            if len(rows) < 2:
                shared = 0
        if not self.share_prefix or shared < MIN_SHARED_PREFIX:
            return cache, torch.zeros((len(rows), 0), dtype=torch.long, device=self.device)
        prefix_ids = rows[0].pending[:shared]
        per_adapter = {} if prefixes is None else prefixes
        for adapter in dict.fromkeys(r.adapter for r in rows):
            if adapter not in per_adapter:
                per_adapter[adapter] = self._prefix(prefix_ids, adapter)
        for layer in range(len(next(iter(per_adapter.values())))):
            keys = torch.cat([per_adapter[row.adapter][layer][0] for row in rows])
            values = torch.cat([per_adapter[row.adapter][layer][1] for row in rows])
            cache.update(keys, values, layer)
        for row in rows:
            row.ids, row.columns, row.pending = row.pending[:shared], list(range(shared)), row.pending[shared:]
        self.stats.prefix_tokens_reused += shared * len(rows)
        return cache, torch.ones((len(rows), shared), dtype=torch.long, device=self.device)

    def _prefix(self, ids: list[int], adapter: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Keys and values of `ids` (batch of one) under `adapter`, per layer."""
        cache = new_cache(self.model)
        inputs = torch.tensor([ids], dtype=torch.long, device=self.device)
        extra = {"adapter_names": [adapter]} if self.is_peft else {}
        with cleaned_on_failure(self.model):
            self.model(input_ids=inputs, cache=cache, use_cache=True, logits_to_keep=1, **extra)
        self.stats.forward_calls += 1
        self.stats.prefix_tokens += len(ids)
        return [(layer.keys, layer.values) for layer in cache.layers]

    def _step(self, active: list[_Row], cache: Any, mask: torch.Tensor, width: int | None = None) -> torch.Tensor:
        """One forward over the active rows, then a greedy choice for each row with nothing left to feed.

        `width`: tokens per row in this forward (a joining group's prefill feeds whole prompts).
        """
        if width is None:
            longest = max(len(row.pending) for row in active)
            width = longest if longest > FEED_ONE_BY_ONE else 1
        columns = mask.shape[1]
        ids = torch.full((len(active), width), self.pad_id, dtype=torch.long)
        positions = torch.zeros((len(active), width), dtype=torch.long)
        new_mask = torch.zeros((len(active), width), dtype=torch.long)
        for b, row in enumerate(active):
            feed, row.pending = row.pending[:width], row.pending[width:]
            start, fed = width - len(feed), len(row.ids)
            ids[b, start:] = torch.tensor(feed, dtype=torch.long)
            positions[b, :] = fed  # holes: any position, they are masked
            positions[b, start:] = torch.arange(fed, fed + len(feed))
            new_mask[b, start:] = 1
            row.ids += feed
            row.columns += range(columns + start, columns + width)
            decoding = row.generated and len(feed) == 1 and row.generated[-1] == feed[0] and not row.pending
            if decoding:
                self.stats.decode_tokens += 1
            else:
                self.stats.prefill_tokens += len(feed)
            self.stats.padding_tokens += start
        mask = torch.cat([mask, new_mask.to(self.device)], dim=1)
        extra = {"adapter_names": [row.adapter for row in active]} if self.is_peft else {}
        with cleaned_on_failure(self.model):
            logits = self.model(
                input_ids=ids.to(self.device),
                attention_mask=mask,
                position_ids=positions.to(self.device),
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
                **extra,
            ).logits[:, -1, :]
        self.stats.forward_calls += 1
        ready = [b for b, row in enumerate(active) if not row.pending]
        if ready:
            self._choose(active, ready, logits, mask)
        return mask

    def _choose(self, active: list[_Row], ready: list[int], logits: torch.Tensor, mask: torch.Tensor) -> None:
        scores = logits[ready].float()
        masked = sorted(self.min_new_masked)
        for k, b in enumerate(ready):
            if masked and len(active[b].generated) < active[b].min_new:
                scores[k, masked] = float("-inf")
        tokens = scores.argmax(dim=-1).tolist()
        rows = [active[b] for b in ready]
        for row, token in zip(rows, tokens):
            row.generated.append(token)
            row.new_tokens += 1
        self.stats.generated_tokens += len(rows)
        hits = self.stop_strings.hits([row.ids + [row.generated[-1]] for row in rows], [row.stop for row in rows])
        for b, row, token, hit in zip(ready, rows, tokens, hits):
            # Within min_new_tokens no token ends the row (generate goes on after a pad it chose there).
            ended = token in self.enders and len(row.generated) > row.min_new
            if not (ended or hit or len(row.generated) >= row.max_new):
                row.pending = [token]
                continue
            text = self.tokenizer.decode(row.generated, skip_special_tokens=True)
            found = ended or any(s in text for s in row.stop)
            finish = "stop" if found or len(row.generated) < row.max_new else "length"
            result = StepResult(tuple(row.generated), text, finish)
            after = row.continuation(result) if row.continuation is not None else None
            if after is None:
                row.output = GenerationOutput(
                    text, result.token_ids, row.prompt_tokens, row.new_tokens, finish, row.steps
                )
                continue
            self._continue(row, b, after, mask)

    def _join(
        self,
        active: list[_Row],
        cache: Any,
        mask: torch.Tensor,
        rows: list[_Row],
        sub_cache: Any,
        sub_mask: torch.Tensor,
    ) -> tuple[list[_Row], Any, torch.Tensor]:
        """The running batch with `rows` (prefilled in `sub_cache`) appended; both end on the same column."""
        if not active:
            return rows, sub_cache, sub_mask
        columns, joining = mask.shape[1], sub_mask.shape[1]
        pad_active, pad_joining = max(0, joining - columns), max(0, columns - joining)
        for row in active if pad_active else rows:
            row.columns = [c + (pad_active or pad_joining) for c in row.columns]
        merged = merge_caches(cache, sub_cache, pad_active, pad_joining)
        mask = torch.cat(
            [
                torch.nn.functional.pad(mask, (pad_active, 0)),
                torch.nn.functional.pad(sub_mask, (pad_joining, 0)),
            ]
        )
        return active + rows, merged, mask

    def _leave(
        self,
        active: list[_Row],
        cache: Any,
        mask: torch.Tensor,
        outputs: list[GenerationOutput | None],
        on_batch: BatchDone | None,
    ) -> tuple[list[_Row], torch.Tensor]:
        """Finished rows out of the batch (and their cache rows), handed to `on_batch` together."""
        keep = [b for b, row in enumerate(active) if row.output is None]
        if len(keep) == len(active):
            return active, mask
        done = [row for row in active if row.output is not None]
        for row in done:
            outputs[row.index] = row.output
        if on_batch is not None:
            on_batch([row.index for row in done], [row.output for row in done if row.output is not None])
        if keep:
            index = torch.tensor(keep, device=self.device)
            cache.batch_select_indices(index)
            mask = mask[index]
        return [active[b] for b in keep], mask

    def _compact(self, active: list[_Row], cache: Any, mask: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """Drop the columns no active row attends to, once there are many (rows that left, rolled-back tokens)."""
        live = mask.any(dim=0)
        dead = int(live.numel() - live.sum())
        if dead < max(DEAD_COLUMNS, live.numel() // 4):
            return cache, mask
        kept = live.nonzero().flatten()
        new_column = {int(old): new for new, old in enumerate(kept.tolist())}
        for row in active:  # a row's dead columns are masked out for it too; only its live ones stay listed
            pairs = [(t, new_column[c]) for t, c in zip(row.ids, row.columns) if c in new_column]
            row.ids, row.columns = [t for t, _ in pairs], [c for _, c in pairs]
        self.stats.compactions += 1
        return keep_columns(cache, kept), mask[:, kept]

    def _continue(self, row: _Row, b: int, after: NextStep, mask: torch.Tensor) -> None:
        """Keep the cached tokens the next step's sequence starts with; mask out the rest, feed the new ones."""
        target = list(after.sequence_ids)
        if not target:
            raise ValueError("a continuation needs at least one token")
        keep = min(common_prefix([row.ids, target]), len(target) - 1)  # the last token is fed for its logits
        dropped = row.columns[keep:]
        if dropped:
            mask[b, torch.tensor(dropped, device=mask.device)] = 0
            self.stats.rollback_tokens += len(dropped)
        row.ids, row.columns = row.ids[:keep], row.columns[:keep]
        row.pending = target[keep:]
        row.generated = []
        row.max_new, row.stop = after.max_new_tokens, tuple(after.stop)
        row.steps += 1
        row.prompt_tokens += len(target)


def use_sdpa(model: Any) -> None:
    """On CUDA, PyTorch's fused attention (transformers' default for most decoders; set it where not)."""
    config = getattr(model, "config", None)
    if (
        config is not None
        and getattr(config, "_attn_implementation", "sdpa") != "sdpa"
        and hasattr(model, "set_attn_implementation")
    ):
        try:
            model.set_attn_implementation("sdpa")
        except (ValueError, ImportError):  # the architecture has no SDPA path: keep its own
            pass
