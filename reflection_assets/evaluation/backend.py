"""Where the evaluated models run: the three operations the evaluator needs from them, and the in-process one.

The `Evaluator` keys, caches and scores; a backend only computes. `InProcessBackend` runs the
loaded (Peft)model here (the code paths the evaluator always had, so its cache keys and verdicts
are unchanged); `reflection_assets.served.evaluation.ServedEvalBackend` asks the vLLM server the
student is served on. An adapter is named as the backend knows it (`ModelUnderTest.adapter`):
the PEFT adapter's name here, the served LoRA's name there; None is the base model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from reflection_assets.evaluation.harness import Generate, HarnessSample
from reflection_assets.evaluation.likelihood import NllRequest, answer_nll
from reflection_assets.generation.requests import GenerationRequest


class Generation(Protocol):
    """What the evaluator keeps of one generated answer."""

    text: str
    new_tokens: int
    finish_reason: str


BatchSaved = Callable[[list[int], Sequence[Generation]], None]  # (request indices, their outputs)


class EvalBackend(Protocol):
    identity: list  # what identifies the computing model beside the adapter's key: in every cache key

    def describe(self) -> str: ...

    def generate(self, requests: Sequence[GenerationRequest], on_batch: BatchSaved) -> None:
        """Greedy answers; `on_batch` sees each finished group at once, so a killed run keeps them."""

    def answer_nll(self, requests: Sequence[NllRequest]) -> list[float]:
        """Mean NLL (nats a token) of each request's answer given its prompt; NaN for an empty answer."""

    def harness(
        self,
        adapters: Sequence[str | None],
        tasks: Sequence[str],
        include_path: Path,
        system: str | None,
        generate: Generate | None = None,
    ) -> dict[str | None, list[HarnessSample]]:
        """lm-eval's samples of every task, per adapter (None = base); greedy answers from `generate`
        where the backend runs lm-eval in process."""


def dtype_name(model: Any) -> str:
    return str(getattr(model, "dtype", "")).removeprefix("torch.")


class InProcessBackend:
    """One loaded (Peft)model and its tokenizer; adapters are chosen per row (mixed-adapter batches)."""

    def __init__(self, model: Any, tokenizer: Any, fingerprint: str, batch_tokens: int | None = None) -> None:
        self.model, self.tokenizer = model, tokenizer
        # Unchanged since the first cached outputs: a different list would orphan them.
        self.identity = [fingerprint, str(getattr(model, "dtype", "")), model.device.type]
        from reflection_assets.generation.engine import GenerationEngine  # torch: only where a model runs

        self.engine = GenerationEngine(model, tokenizer, batch_tokens=batch_tokens)

    def describe(self) -> str:
        return f"in-process ({self.model.device.type}, {dtype_name(self.model)})"

    def generate(self, requests: Sequence[GenerationRequest], on_batch: BatchSaved) -> None:
        self.engine.generate(requests, on_batch=on_batch)

    def answer_nll(self, requests: Sequence[NllRequest]) -> list[float]:
        tokenizer = self.tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return answer_nll(self.model, requests, int(pad))

    def harness(
        self,
        adapters: Sequence[str | None],
        tasks: Sequence[str],
        include_path: Path,
        system: str | None,
        generate: Generate | None = None,
    ) -> dict[str | None, list[HarnessSample]]:
        from reflection_assets.evaluation.harness import run_harness

        return run_harness(
            self.model, self.tokenizer, adapters, tasks, include_path, system_instruction=system, generate=generate
        )
