"""Greedy generation for evaluation, to the generation-engine contract (issue 10).

Interim and minimal until `reflection_assets.generation.engine` lands (the lead points imports
there): length-sorted, left-padded batches; with a `PeftModel`, one batch mixes adapters through
PEFT's `generate(..., adapter_names=[...])`, `"__base__"` for the base model (needs eval mode).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" in adapter_names
DEFAULT_BATCH_TOKENS = 8192


@dataclass(frozen=True)
class GenerationRequest:
    prompt_ids: tuple[int, ...]  # already templated token ids
    max_new_tokens: int
    adapter: str | None = None  # PEFT adapter name of the loaded PeftModel; None = the base model


@dataclass(frozen=True)
class GenerationOutput:
    text: str
    token_ids: tuple[int, ...]
    prompt_tokens: int
    new_tokens: int
    finish_reason: str  # "stop" | "length"


def is_peft_model(model: Any) -> bool:
    return hasattr(model, "peft_config")


def stop_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for value in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    return ids


def left_padded(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[list[list[int]], list[list[int]]]:
    """Input ids and attention mask, every row padded on the left to the longest."""
    width = max(len(r) for r in rows)
    ids = [[pad_id] * (width - len(r)) + list(r) for r in rows]
    mask = [[0] * (width - len(r)) + [1] * len(r) for r in rows]
    return ids, mask


class GenerationEngine:
    """Greedy, one output per request, in order."""

    def __init__(self, model: Any, tokenizer: Any, *, batch_tokens: int | None = None, num_threads: int | None = None):
        if num_threads:
            import torch

            torch.set_num_threads(num_threads)
        self.model, self.tokenizer = model.eval(), tokenizer
        self.batch_tokens = batch_tokens or DEFAULT_BATCH_TOKENS
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad)

    def batches(self, requests: Sequence[GenerationRequest]) -> list[list[int]]:
        """Indices grouped by max_new_tokens, sorted by prompt length, cut at the token budget."""
        order = sorted(range(len(requests)), key=lambda i: (requests[i].max_new_tokens, len(requests[i].prompt_ids)))
        batches: list[list[int]] = []
        for i in order:
            current = batches[-1] if batches else None
            if current and requests[current[0]].max_new_tokens == requests[i].max_new_tokens:
                width = len(requests[i].prompt_ids) + requests[i].max_new_tokens
                if width * (len(current) + 1) <= self.batch_tokens:
                    current.append(i)
                    continue
            batches.append([i])
        return batches

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationOutput]:
        if any(r.adapter for r in requests) and not is_peft_model(self.model):
            raise ValueError("a request names an adapter but the model is not a PeftModel")
        outputs: list[GenerationOutput | None] = [None] * len(requests)
        for batch in self.batches(requests):
            for i, output in zip(batch, self.generate_batch([requests[i] for i in batch])):
                outputs[i] = output
        return [o for o in outputs if o is not None]

    def generate_batch(self, requests: Sequence[GenerationRequest]) -> list[GenerationOutput]:
        import torch

        ids, mask = left_padded([r.prompt_ids for r in requests], self.pad_id)
        device = self.model.device
        kwargs: dict[str, Any] = {
            "input_ids": torch.tensor(ids, device=device),
            "attention_mask": torch.tensor(mask, device=device),
            "max_new_tokens": requests[0].max_new_tokens,
            "do_sample": False,
            "temperature": None,
            "top_p": None,
            "top_k": None,
            "pad_token_id": self.pad_id,
        }
        if is_peft_model(self.model):
            kwargs["adapter_names"] = [r.adapter or BASE_ADAPTER for r in requests]
        with torch.inference_mode():
            generated = self.model.generate(**kwargs)[:, len(ids[0]) :].tolist()
        enders = stop_ids(self.model, self.tokenizer)
        outputs = []
        for request, row in zip(requests, generated):
            end = next((k for k, token in enumerate(row) if token in enders), None)
            kept = row if end is None else row[:end]
            finish = "stop" if end is not None else "length"
            text = self.tokenizer.decode(kept, skip_special_tokens=True)
            outputs.append(GenerationOutput(text, tuple(kept), len(request.prompt_ids), len(kept), finish))
        return outputs
