"""`ServedEvalBackend`: the evaluator's three model operations on the vLLM server the student is served on.

The same token ids as in process: greedy generation of each (model, item) as a token-id prompt,
held-out NLL as the mean -log p of the answer tokens from `prompt_logprobs` of prompt + answer
(`likelihood.answer_nll`'s definition), and lm-eval's own task machinery through its
`local-completions` model, pointed at the same server with the student's local tokenizer. An
adapter is the LoRA's served name (`served.adapters`); the base is the served model. Generations
come back in groups of `REQUESTS_PER_CHUNK` x concurrency and are saved group by group.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from reflection_assets.evaluation.backend import BatchSaved
from reflection_assets.evaluation.harness import Generate, HarnessSample, evaluate_lm, task_manager
from reflection_assets.evaluation.likelihood import NllRequest
from reflection_assets.generation.requests import GenerationRequest
from reflection_assets.served.client import CallFailed, Generated, ServedStudent, mean_nll

REQUESTS_PER_CHUNK = 8  # x max_concurrency: generations between two cache writes
SERVED_MARKER = "served"  # beside the server's fingerprint: served outputs never share a key with in-process ones


class ServedEvalBackend:
    """The base model and its LoRA adapters as one vLLM server serves them."""

    def __init__(self, server: ServedStudent, tokenizer: Any, tokenizer_dir: str) -> None:
        """`tokenizer_dir`: where lm-eval loads the student's tokenizer from (the local copy of the weights)."""
        self.server, self.tokenizer, self.tokenizer_dir = server, tokenizer, tokenizer_dir
        self.identity = [server.fingerprint(), SERVED_MARKER, "http"]
        self.requests = 0  # generation and likelihood requests sent (tests check a cached re-run sends none)

    def describe(self) -> str:
        return f"vLLM: {self.server.describe()}"

    def served_name(self, adapter: str | None) -> str:
        return adapter or self.server.model

    # -- generation -----------------------------------------------------------------------------------

    def generate(self, requests: Sequence[GenerationRequest], on_batch: BatchSaved) -> None:
        for request in requests:
            if request.stop or request.continuation is not None or request.min_new_tokens:
                raise ValueError("served evaluation generates plain greedy answers (no stops, continuations)")

        async def one(client: httpx.AsyncClient, request: GenerationRequest) -> Generated:
            return await self.server.generate(
                client, request.prompt_ids, request.max_new_tokens, model=self.served_name(request.adapter)
            )

        step = max(1, REQUESTS_PER_CHUNK * self.server.policy.max_concurrency)
        for start in range(0, len(requests), step):
            indices = list(range(start, min(start + step, len(requests))))
            outputs = self.server.map(one, [requests[i] for i in indices])
            self.requests += len(indices)
            on_batch(indices, outputs)

    # -- held-out likelihood --------------------------------------------------------------------------

    def answer_nll(self, requests: Sequence[NllRequest]) -> list[float]:
        scored = [i for i, r in enumerate(requests) if r.answer_ids]

        async def one(client: httpx.AsyncClient, request: NllRequest) -> float:
            ids = [*request.prompt_ids, *request.answer_ids]
            logprobs = await self.server.prompt_logprobs(client, ids, model=self.served_name(request.adapter))
            return mean_nll(logprobs, len(request.prompt_ids))

        # Never more than `logprob_concurrency` in flight (one by default): a LoRA-enabled vLLM 0.32
        # engine dies on a batch that mixes a prompt_logprobs request with another (client.py).
        values = self.server.map(one, [requests[i] for i in scored], self.server.logprob_concurrency)
        self.requests += len(scored)
        results = [math.nan] * len(requests)
        for i, value in zip(scored, values):
            results[i] = value
        return results

    # -- lm-evaluation-harness ------------------------------------------------------------------------

    def harness(
        self,
        adapters: Sequence[str | None],
        tasks: Sequence[str],
        include_path: Path,
        system: str | None,
        generate: Generate | None = None,
    ) -> dict[str | None, list[HarnessSample]]:
        """lm-eval's local-completions model on the server (`generate` is for in-process backends)."""
        import aiohttp
        import requests

        manager = task_manager(include_path, tasks)
        chat = bool(getattr(self.tokenizer, "chat_template", None))
        out: dict[str | None, list[HarnessSample]] = {}
        for adapter in adapters:
            try:
                out[adapter] = evaluate_lm(self.lm_eval_model(adapter), tasks, manager, chat, None, system)
            except (aiohttp.ClientError, requests.RequestException, TimeoutError) as exc:
                # lm-eval retried already; the caller sees the one failure type every served call raises.
                detail = self.server.redact(f"{type(exc).__name__}: {exc}")
                where = f"{self.served_name(adapter)!r} at {self.server.base_url}"
                raise CallFailed(f"lm-eval on {where}: {detail}") from None
        return out

    def lm_eval_model(self, adapter: str | None) -> Any:
        """lm-eval's `local-completions` model on this server's /completions for one served name.

        Requests go as token ids of the local tokenizer (`tokenizer_backend="huggingface"`), as HFLM's
        do. The key goes in the header lm-eval is given: it never reads OPENAI_API_KEY then (that
        variable might hold some other service's key), and nothing is put in the environment.
        """
        from lm_eval.models.openai_completions import LocalCompletionsAPI

        policy = self.server.policy
        key = self.server.api_key
        return LocalCompletionsAPI(
            base_url=self.server.url("completions"),
            model=self.served_name(adapter),
            tokenizer=self.tokenizer_dir,
            tokenizer_backend="huggingface",
            header={"Authorization": f"Bearer {key}"} if key else {"Accept": "application/json"},
            num_concurrent=policy.max_concurrency,
            max_retries=policy.max_attempts,
            timeout=int(policy.timeout_s),
            max_length=self.max_model_len(),
        )

    def max_model_len(self) -> int:
        """The server's context length (lm-eval left-truncates prompts past it; its default is 2048)."""
        card = next((c for c in self.server.models() if c.get("id") == self.server.model), {})
        value = card.get("max_model_len")
        return int(value) if isinstance(value, int) and value > 1 else 2048
