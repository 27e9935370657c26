"""Held-out answer likelihood: mean NLL of each reference answer given its prompt, teacher-forced.

Cheap (one forward pass an item, no generation) and sensitive even at 135M parameters, so it is
the suite most likely to show a difference when there is one. Batches are right-padded so real
tokens keep their positions; with a `PeftModel` the adapter is chosen per row (`adapter_names`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reflection_assets.generation.peft_hooks import cleaned_on_failure
from reflection_assets.generation.requests import BASE_ADAPTER


@dataclass(frozen=True)
class NllRequest:
    prompt_ids: tuple[int, ...]
    answer_ids: tuple[int, ...]
    adapter: str | None = None


def answer_nll(model: Any, requests: Sequence[NllRequest], pad_id: int, batch_size: int = 8) -> list[float]:
    """Mean NLL (nats a token) of each request's answer ids; NaN when the answer is empty."""
    import torch

    results: list[float] = [float("nan")] * len(requests)
    order = sorted(
        (i for i, r in enumerate(requests) if r.answer_ids),
        key=lambda i: len(requests[i].prompt_ids) + len(requests[i].answer_ids),
    )
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        rows = [list(requests[i].prompt_ids) + list(requests[i].answer_ids) for i in batch]
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], device=model.device)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=model.device)
        kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if hasattr(model, "peft_config"):  # a PeftModel serves several adapters in one batch
            kwargs["adapter_names"] = [requests[i].adapter or BASE_ADAPTER for i in batch]
        with torch.inference_mode():
            with cleaned_on_failure(model):
                logprobs = torch.log_softmax(model(**kwargs).logits.float(), dim=-1)
        for row, i in enumerate(batch):
            start_at, answer = len(requests[i].prompt_ids), requests[i].answer_ids
            positions = torch.arange(start_at - 1, start_at - 1 + len(answer), device=model.device)
            picked = logprobs[row, positions, torch.tensor(answer, device=model.device)]
            results[i] = float(-picked.mean())
    return results
