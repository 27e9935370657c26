"""OpenAI-compatible chat-completions teacher (OpenAI, vLLM, Ollama, llama.cpp, transformers serve).

Requests run with bounded concurrency on one async httpx client. Transient failures (timeouts,
connection errors, 408/425/429/5xx, malformed bodies) are retried by tenacity with full-jitter
exponential backoff; a Retry-After header is honoured. After `max_attempts` the call becomes an
error result naming the last failure. The API key is sent as a bearer token and nowhere else: it
is masked in the resource's repr and scrubbed from every error text.

Guided generation continues an assistant prefix (`continue_final_message`, as vLLM does). It is
off by default, since a large teacher should write freely as in the paper; before the first guided
call the server is probed once, and one that cannot continue a prefix stops the run with a clear
error instead of answering every step with a fresh turn.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Optional, TypeVar

import httpx
from pydantic import Field, PrivateAttr
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_base, wait_random_exponential

from reflection_assets.teacher.backend import TeacherError, normalise
from reflection_assets.teacher.guided import GuidedState
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
from resources.teacher import Teacher

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
TOP_LOGPROBS = 20  # alternatives asked for the judge's first token (vLLM's default --max-logprobs)
MASK = "***"


class RetryableError(Exception):
    """A failure worth another attempt; `retry_after` is the server's requested wait, if any."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class FatalError(Exception):
    """A failure another attempt would repeat (bad request, authentication)."""


class CallFailed(Exception):
    """A call that gave up; the message is safe to log (no credentials). `refused`: the server
    answered with a client error (another attempt would repeat it)."""

    def __init__(self, message: str, refused: bool = False):
        super().__init__(message)
        self.refused = refused


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class RetryAfterWait(wait_base):
    """Full-jitter exponential backoff, but never shorter than the server's Retry-After."""

    def __init__(self, initial: float, maximum: float, max_retry_after: float):
        self.backoff = wait_random_exponential(multiplier=initial, max=maximum)
        self.max_retry_after = max_retry_after

    def __call__(self, retry_state: RetryCallState) -> float:
        backoff = self.backoff(retry_state)
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is None:
            return backoff
        # Spread clients that were all told the same time over a small window after it.
        wait = retry_after + random.uniform(0.0, 0.1 * retry_after + 0.05)
        return min(max(wait, backoff), self.max_retry_after)


@dataclass
class Reply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    data: dict


@dataclass
class Counter:
    requests: int = 0
    retries: int = 0


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from sync code, also when the caller already has a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


class OpenAICompatibleTeacher(Teacher):
    """Chat completions over HTTP with bounded concurrency, timeouts and retries."""

    base_url: str = Field(description="Server base URL including /v1, e.g. http://127.0.0.1:8000/v1.")
    model: str = Field(description="Model name the server expects in requests.")
    api_key: Optional[str] = Field(
        default=None, repr=False, description="Bearer token (secret; optional for local servers)."
    )
    max_concurrency: int = Field(default=8, description="Requests in flight at once.")
    timeout_s: float = Field(default=120.0, description="Read/write timeout of one request.")
    connect_timeout_s: float = Field(default=10.0, description="Connect timeout of one request.")
    max_attempts: int = Field(default=5, description="Attempts per request, the first included.")
    backoff_initial_s: float = Field(default=0.5, description="Scale of the exponential backoff.")
    backoff_max_s: float = Field(default=30.0, description="Longest backoff between attempts.")
    max_retry_after_s: float = Field(default=120.0, description="Longest Retry-After honoured.")
    guided: bool = Field(
        default=False,
        description="Guided generation unless a run says otherwise: each marker is opened for the teacher and "
        "the server continues the assistant turn (vLLM's continue_final_message). For small teachers.",
    )

    _prefix_checked: bool = PrivateAttr(default=False)

    def __repr_args__(self):  # type: ignore[no-untyped-def]
        yield from super().__repr_args__()
        yield "api_key", MASK if self.api_key else None

    # -- Teacher interface -------------------------------------------------------------------

    def cache_identity(self) -> dict:
        return {"backend": "openai", "model": self.model}

    @property
    def supports_guided(self) -> bool:
        return True  # whether the server can is checked before the first guided call

    @property
    def guided_by_default(self) -> bool:
        return self.guided

    def complete(
        self,
        requests: Sequence[ChatRequest],
        admit: Admit | None = None,
        on_result: OnResult | None = None,
    ) -> list[ChatResult]:
        return run_sync(self.complete_async(requests, admit, on_result))

    def choose(self, messages: Sequence[Message], options: Sequence[str]) -> list[float]:
        return run_sync(self.choose_async(list(messages), list(options)))

    # -- async implementation ----------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(self.timeout_s, connect=self.connect_timeout_s),
            limits=httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency),
        )

    async def complete_async(
        self,
        requests: Sequence[ChatRequest],
        admit: Admit | None = None,
        on_result: OnResult | None = None,
    ) -> list[ChatResult]:
        results: list[ChatResult | None] = [None] * len(requests)
        indices = iter(range(len(requests)))

        async def worker(client: httpx.AsyncClient) -> None:
            for i in indices:  # one shared iterator: each worker takes the next request in order
                request = requests[i]
                if admit is not None and not admit(request):
                    result = ChatResult(status=CALL_SKIPPED, error="not admitted (cap reached)")
                else:
                    result = await self.call(client, request)
                results[i] = result
                if on_result is not None:
                    # In a thread: the caller saves the result (a disk write) while the other requests
                    # go on; this worker takes its next request only once that is done.
                    await asyncio.to_thread(on_result, i, result)

        async with self._client() as client:
            if any(r.guide for r in requests):
                await self.check_prefix_continuation(client)
            workers = min(self.max_concurrency, len(requests))
            await asyncio.gather(*(worker(client) for _ in range(workers)))
        return [r if r is not None else ChatResult(status=CALL_SKIPPED) for r in results]

    async def call(self, client: httpx.AsyncClient, request: ChatRequest) -> ChatResult:
        """One logical call (several requests when guided); failures come back as results."""
        start, counter = time.perf_counter(), Counter()
        try:
            if request.guide is None:
                reply = await self.post(client, self.body(request.message_dicts(), request.sampling), counter)
                text, prompt, completion, finish = (
                    reply.text,
                    reply.prompt_tokens,
                    reply.completion_tokens,
                    reply.finish_reason,
                )
            else:
                text, prompt, completion, finish = await self._guided(client, request, counter)
        except CallFailed as exc:
            return ChatResult(
                status=CALL_ERROR, error=self.redact(str(exc)), latency_s=time.perf_counter() - start,
                requests=counter.requests, retries=counter.retries,
            )
        return ChatResult(
            text=text, prompt_tokens=prompt, completion_tokens=completion, latency_s=time.perf_counter() - start,
            requests=counter.requests, retries=counter.retries, finish_reason=finish,
        )

    async def _guided(
        self, client: httpx.AsyncClient, request: ChatRequest, counter: Counter
    ) -> tuple[str, int, int, str]:
        assert request.guide is not None
        state, prompt, completion, finish = GuidedState(), 0, 0, "stop"
        for step in request.guide.steps:
            prefix = state.prefix_for(step)
            messages = request.message_dicts() + ([{"role": "assistant", "content": prefix}] if prefix else [])
            sampling = Sampling(
                max_new_tokens=step.max_new_tokens, temperature=request.sampling.temperature,
                top_p=request.sampling.top_p, seed=request.sampling.seed, stop=step.stop,
            )
            reply = await self.post(client, self.body(messages, sampling, continue_prefix=bool(prefix)), counter)
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

    async def post(self, client: httpx.AsyncClient, body: dict, counter: Counter) -> Reply:
        """POST with retries; raises CallFailed with a clear, credential-free message."""

        def note_retry(state: RetryCallState) -> None:
            counter.retries += 1
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            log.warning(
                "teacher request failed (%s); attempt %d/%d, retrying in %.2fs",
                self.redact(str(exc)), state.attempt_number, self.max_attempts, wait,
            )

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=RetryAfterWait(self.backoff_initial_s, self.backoff_max_s, self.max_retry_after_s),
            retry=retry_if_exception_type(RetryableError),
            before_sleep=note_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    counter.requests += 1
                    return await self.post_once(client, body)
        except RetryableError as exc:
            raise CallFailed(f"gave up after {self.max_attempts} attempts to {self.endpoint()}: {exc}") from None
        except FatalError as exc:
            raise CallFailed(f"request to {self.endpoint()} failed: {exc}", refused=True) from None
        raise AssertionError("unreachable: tenacity reraises")

    def endpoint(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    async def post_once(self, client: httpx.AsyncClient, body: dict) -> Reply:
        try:
            response = await client.post(self.endpoint(), json=body)
        except httpx.TimeoutException as exc:
            raise RetryableError(f"timed out ({type(exc).__name__}, timeout {self.timeout_s}s)") from None
        except httpx.TransportError as exc:
            raise RetryableError(f"transport error ({type(exc).__name__}: {exc})") from None
        status = response.status_code
        if status in RETRY_STATUSES:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            raise RetryableError(f"HTTP {status}", retry_after=retry_after)
        if status >= 400:
            raise FatalError(f"HTTP {status}: {response.text[:300]}")
        try:
            data = response.json()
        except ValueError:
            raise RetryableError(
                f"HTTP {status} with a body that is not valid JSON ({len(response.content)} bytes)"
            ) from None
        return read_reply(data)

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
            log.warning("could not check that the server continues an assistant prefix (%s); guided anyway",
                        self.redact(str(exc)))
            return
        if not continued.prompt_tokens or not plain.prompt_tokens:
            log.warning("the server reports no prompt tokens: cannot check that it continues an assistant prefix; "
                        "guided anyway")
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
                self.endpoint(), continued.prompt_tokens, plain.prompt_tokens,
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
        async with self._client() as client:
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
                self.endpoint(), reply.text[:40],
                "matched an option" if source == "text" else "no option matched: a tie",
                self.judge_stats.text + self.judge_stats.none, self.judge_stats.choices,
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
    content = ((choice.get("logprobs") or {}).get("content") or [])
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


def option_probabilities(reply: Reply, options: Sequence[str]) -> list[float]:
    """Option probabilities of a judge's reply (see `read_choice`)."""
    return read_choice(reply, options)[0]
