"""The teacher over HTTP: any OpenAI-compatible chat-completions server (OpenAI, vLLM, Ollama, llama.cpp,
transformers serve).

Requests run with bounded concurrency on one async httpx client. Transient failures (timeouts,
connection errors, 408/425/429/5xx, malformed bodies) are retried by tenacity with full-jitter
exponential backoff; a Retry-After header is honoured. After `max_attempts` the call becomes an
error result naming the last failure. The API key is sent as a bearer token and nowhere else: it
is masked in the resource's repr and scrubbed from every error text.

Guided generation continues an assistant prefix (`continue_final_message`, as vLLM does). It is
off by default, since a large teacher should write freely as in the paper; before the first guided
call the server is probed once, and one that cannot continue a prefix stops the run with a clear
error instead of answering every step with a fresh turn.

`resources.teacher_http.OpenAICompatibleTeacher` wraps this as a Dagster resource (its fields are the
deployment's settings).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from reflection_assets.flow_control import AdaptiveLimit, RateLimit
from reflection_assets.http_retries import (
    DEFAULT_POLICY,
    CallFailed,
    Counter,
    RetryableError,
    RetryPolicy,
    client_pool,
    new_client,
    post_with_retries,
    run_sync,
)
from reflection_assets.teacher.backend import TeacherError, normalise
from reflection_assets.teacher.guided import GuidedState
from reflection_assets.teacher.planning import estimate_prompt_tokens, worst_case_tokens
from reflection_assets.teacher.stats import JudgeStats
from reflection_assets.teacher.types import (
    CALL_ERROR,
    CALL_SKIPPED,
    Admit,
    ChatRequest,
    ChatResult,
    Message,
    OnResult,
    Sampling,
)

log = logging.getLogger(__name__)

TOP_LOGPROBS = 20  # alternatives asked for the judge's first token (vLLM's default --max-logprobs)
MASK = "***"


@dataclass
class Reply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    data: dict


class ChatCompletionsTeacher:
    """Chat completions over HTTP with bounded concurrency, timeouts and retries."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        judge_stats: JudgeStats | None = None,
    ) -> None:
        self.base_url, self.model, self.api_key, self.policy = base_url, model, api_key, policy
        self.judge_stats = judge_stats if judge_stats is not None else JudgeStats()
        self.last_flow: dict = {}  # the last `complete`'s flow control: highest in-flight limit, push-backs, waits
        self._prefix_checked = False

    def __repr__(self) -> str:
        return f"ChatCompletionsTeacher({self.model!r} at {self.base_url!r}, api_key={MASK if self.api_key else None})"

    def complete(
        self, requests: Sequence[ChatRequest], admit: Admit | None = None, on_result: OnResult | None = None
    ) -> list[ChatResult]:
        return run_sync(self.complete_async(requests, admit, on_result))

    def choose(self, messages: Sequence[Message], options: Sequence[str]) -> list[float]:
        return run_sync(self.choose_async(list(messages), list(options)))

    def flow_stats(self) -> dict[str, int | float]:
        return dict(self.last_flow)

    def choose_many(self, asks: Sequence[tuple[Sequence[Message], Sequence[str]]]) -> list[list[float]]:
        """`choose` for each question in turn (a judge's questions are few; each is one short request)."""
        return [self.choose(messages, options) for messages, options in asks]

    # -- async implementation ----------------------------------------------------------------

    async def complete_async(
        self, requests: Sequence[ChatRequest], admit: Admit | None = None, on_result: OnResult | None = None
    ) -> list[ChatResult]:
        results: list[ChatResult | None] = [None] * len(requests)
        indices = iter(range(len(requests)))
        policy = self.policy
        flow = AdaptiveLimit(ceiling=policy.max_concurrency, start=policy.initial_concurrency)
        rate = RateLimit(policy.requests_per_minute, policy.tokens_per_minute)

        async def worker(client: httpx.AsyncClient) -> None:
            for i in indices:  # one shared iterator: each worker takes the next request in order
                request = requests[i]
                if admit is not None and not admit(request):
                    result = ChatResult(status=CALL_SKIPPED, error="not admitted (cap reached)")
                else:
                    if rate.active:  # the token estimate only where a limit reads it
                        await rate.acquire(worst_case_tokens(request, estimate_prompt_tokens(request)))
                    await flow.acquire()
                    try:
                        result = await self.call(client, request, flow)
                    finally:
                        await flow.release()
                results[i] = result
                if on_result is not None:
                    # In a thread: the caller queues the result for its writer (which may hold it back while the
                    # store catches up) and parses it; this worker takes its next request once that is done.
                    await asyncio.to_thread(on_result, i, result)

        workers = min(self.policy.max_concurrency, len(requests))
        async with client_pool(self.policy, self.api_key, workers) as clients:
            if any(r.guide for r in requests):
                await self.check_prefix_continuation(clients[0])
            await asyncio.gather(*(worker(clients[k % len(clients)]) for k in range(workers)))
        self.last_flow = {"peak_limit": flow.peak, "push_backs": flow.throttles, "rate_wait_s": rate.waited_s}
        log.info(
            "teacher: %d requests, in-flight limit up to %d (ceiling %d), %d push-backs from the server, %.1f s waited "
            "for the rate limits", len(requests), flow.peak, flow.ceiling, flow.throttles, rate.waited_s,
        )
        return [r if r is not None else ChatResult(status=CALL_SKIPPED) for r in results]

    async def call(
        self, client: httpx.AsyncClient, request: ChatRequest, flow: AdaptiveLimit | None = None
    ) -> ChatResult:
        """One logical call (several requests when guided); failures come back as results."""
        start, counter = time.perf_counter(), Counter()
        try:
            if request.guide is None:
                body = self.body(request.message_dicts(), request.sampling)
                reply = await self.post(client, body, counter, flow)
                text, prompt, completion, finish = (
                    reply.text,
                    reply.prompt_tokens,
                    reply.completion_tokens,
                    reply.finish_reason,
                )
            else:
                text, prompt, completion, finish = await self._guided(client, request, counter, flow)
        except CallFailed as exc:
            return ChatResult(
                status=CALL_ERROR,
                error=self.redact(str(exc)),
                latency_s=time.perf_counter() - start,
                requests=counter.requests,
                retries=counter.retries,
            )
        return ChatResult(
            text=text,
            prompt_tokens=prompt,
            completion_tokens=completion,
            latency_s=time.perf_counter() - start,
            requests=counter.requests,
            retries=counter.retries,
            finish_reason=finish,
        )

    async def _guided(
        self, client: httpx.AsyncClient, request: ChatRequest, counter: Counter, flow: AdaptiveLimit | None = None
    ) -> tuple[str, int, int, str]:
        assert request.guide is not None
        state, prompt, completion, finish = GuidedState(), 0, 0, "stop"
        for step in request.guide.steps:
            prefix = state.prefix_for(step)
            messages = request.message_dicts() + ([{"role": "assistant", "content": prefix}] if prefix else [])
            sampling = Sampling(
                max_new_tokens=step.max_new_tokens,
                temperature=request.sampling.temperature,
                top_p=request.sampling.top_p,
                seed=request.sampling.seed,
                stop=step.stop,
            )
            reply = await self.post(client, self.body(messages, sampling, continue_prefix=bool(prefix)), counter, flow)
            prompt, completion = prompt + reply.prompt_tokens, completion + reply.completion_tokens
            state.absorb(step, reply.text, hit_length=reply.finish_reason == "length")
            if state.truncated:
                finish = "length"
            if state.finished:
                break
        return state.close(request.guide), prompt, completion, finish

    def body(self, messages: list[Message], sampling: Sampling, continue_prefix: bool = False) -> dict:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if sampling.min_new_tokens:
            body["min_tokens"] = sampling.min_new_tokens  # vLLM extension; others ignore or reject it
        if continue_prefix:
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        return body

    async def post(
        self, client: httpx.AsyncClient, body: dict, counter: Counter, flow: AdaptiveLimit | None = None
    ) -> Reply:
        """POST with the shared retry policy; raises CallFailed with a clear, credential-free message."""
        return await post_with_retries(
            client,
            self.endpoint(),
            body,
            self.policy,
            counter,
            parse=read_reply,
            redact=self.redact,
            who="teacher request",
            flow=flow,
        )

    def endpoint(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    async def check_prefix_continuation(self, client: httpx.AsyncClient) -> None:
        """Once per instance: does the server continue a final assistant message?

        The same two messages are sent as a continuation and as a plain request (one token each).
        A server that continues renders the open turn, so its prompt is shorter than the plain
        request's (which closes the turn and opens a new one); equal prompts mean the flag was
        ignored, a 4xx means it was refused. Either way guided steps would be written as fresh
        replies, so the run stops here with the reason.
        """
        if self._prefix_checked:
            return
        messages = [{"role": "user", "content": "Count to five."}, {"role": "assistant", "content": "One, two,"}]
        one_token = Sampling(max_new_tokens=1, temperature=0.0)
        try:
            continued = await self.post(client, self.body(messages, one_token, continue_prefix=True), Counter())
            plain = await self.post(client, self.body(messages, one_token), Counter())
        except CallFailed as exc:
            if exc.refused:
                raise TeacherError(
                    f"guided generation needs a server that continues an assistant prefix; {self.endpoint()} "
                    f"refused continue_final_message ({self.redact(str(exc))[:300]}). Run unguided "
                    f"(REFLECTION_TEACHER_GUIDED=false, or guided: false in the run config) or use vLLM."
                ) from None
            log.warning(
                "could not check that the server continues an assistant prefix (%s); guided anyway",
                self.redact(str(exc)),
            )
            return
        if not continued.prompt_tokens or not plain.prompt_tokens:
            log.warning(
                "the server reports no prompt tokens: cannot check that it continues an assistant prefix; guided anyway"
            )
        elif continued.prompt_tokens >= plain.prompt_tokens:
            raise TeacherError(
                f"guided generation needs a server that continues an assistant prefix; {self.endpoint()} ignored "
                f"continue_final_message (prompt tokens {continued.prompt_tokens} continued vs {plain.prompt_tokens} "
                f"plain). Run unguided (REFLECTION_TEACHER_GUIDED=false, or guided: false in the run config) "
                f"or use vLLM."
            )
        else:
            log.info(
                "guided generation over HTTP: %s continues an assistant prefix "
                "(prompt tokens %d continued vs %d plain)",
                self.endpoint(),
                continued.prompt_tokens,
                plain.prompt_tokens,
            )
        self._prefix_checked = True

    def redact(self, text: str) -> str:
        return text.replace(self.api_key, MASK) if self.api_key else text

    async def choose_async(self, messages: list[Message], options: list[str]) -> list[float]:
        """Option probabilities from the first token's top logprobs; a one-hot read of the text
        when the server offers none (transformers serve, for instance, ignores `logprobs`).

        Where each choice was read from is counted in `judge_stats`; a fallback is logged."""
        body = self.body(messages, Sampling(max_new_tokens=1, temperature=0.0))
        body.update({"logprobs": True, "top_logprobs": TOP_LOGPROBS})
        async with new_client(self.policy, self.api_key) as client:
            try:
                reply = await self.post(client, body, Counter())
            except CallFailed as exc:
                raise CallFailed(self.redact(str(exc))) from None
        probabilities, source = read_choice(reply, options)
        self.judge_stats.record(source)
        if source != "logprobs":
            log.warning(
                "judge: %s returned no log-probabilities; choice read from the reply text %r "
                "(%s; %d of %d choices so far)",
                self.endpoint(),
                reply.text[:40],
                "matched an option" if source == "text" else "no option matched: a tie",
                self.judge_stats.text + self.judge_stats.none,
                self.judge_stats.choices,
            )
        return probabilities


def read_reply(data: Any) -> Reply:
    """The first choice of a chat-completions body; malformed bodies are retryable errors."""
    choices = data.get("choices") if isinstance(data, dict) else None
    if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise RetryableError("response has no choices")
    message = choices[0].get("message") or {}
    usage = data.get("usage") or {}
    return Reply(
        text=str(message.get("content") or ""),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        finish_reason=str(choices[0].get("finish_reason") or ""),
        data=data,
    )


def read_choice(reply: Reply, options: Sequence[str]) -> tuple[list[float], str]:
    """(option probabilities, where they were read from: "logprobs" | "text" | "none").

    With log-probabilities, options are matched to the first generated token's alternatives
    (options should differ there). Without, a reply that names exactly one option makes it certain.
    """
    choice = reply.data["choices"][0]
    content = (choice.get("logprobs") or {}).get("content") or []
    top = content[0].get("top_logprobs") if content and isinstance(content[0], dict) else None
    wanted = [o.strip().lower() for o in options]
    uniform = [1.0 / len(options)] * len(options)
    if top:
        scores: dict[int, float] = {}
        for entry in top:
            token = str(entry.get("token", "")).strip().lower()
            if not token:
                continue
            for i, option in enumerate(wanted):
                if option.startswith(token) and entry.get("logprob") is not None:
                    scores[i] = max(scores.get(i, float("-inf")), float(entry["logprob"]))
        return normalise(scores, len(options)), "logprobs"
    said = reply.text.strip().lower()
    hits = [i for i, o in enumerate(wanted) if said and (o.startswith(said) or said.startswith(o))]
    return (normalise({hits[0]: 0.0}, len(options)), "text") if len(hits) == 1 else (uniform, "none")
