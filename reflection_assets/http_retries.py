"""One retry policy for every OpenAI-compatible server the project calls (teacher and student).

Transient failures (timeouts, connection errors, 408/409/425/429/5xx, bodies that do not parse)
are retried by tenacity with full-jitter exponential backoff that honours a Retry-After header;
after `max_attempts` the call fails with a message naming the endpoint and the last failure.
Client errors (other 4xx) fail at once: another attempt would repeat them. Messages never carry
the API key (callers pass `redact`).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_base, wait_random_exponential

from reflection_assets.documented import documented
from reflection_assets.flow_control import THROTTLE_STATUSES, AdaptiveLimit

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class RetryableError(Exception):
    """A failure worth another attempt; `retry_after` is the server's requested wait, if any; `status` its HTTP
    status when it answered."""

    def __init__(self, message: str, retry_after: float | None = None, status: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class FatalError(Exception):
    """A failure another attempt would repeat (bad request, authentication); `status`: the HTTP status."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class CallFailed(Exception):
    """A call that gave up; the message is safe to log (no credentials). `refused`: the server
    answered with a client error (another attempt would repeat it), whose HTTP status is `status`."""

    def __init__(self, message: str, refused: bool = False, status: int | None = None):
        super().__init__(message)
        self.refused = refused
        self.status = status


@dataclass(frozen=True)
class RetryPolicy:
    """Concurrency, timeouts and retries of one client; the defaults are every client's defaults."""

    max_concurrency: int = documented(
        64,
        "Most requests in flight at once: the client starts at initial_concurrency, doubles while the server keeps "
        "up and halves on 429/503.",
    )
    initial_concurrency: int = documented(8, "Requests in flight at the start, before the server has answered.")
    requests_per_minute: float = documented(0.0, "Requests per minute at most (0: no limit), e.g. a provider's RPM.")
    tokens_per_minute: float = documented(
        0.0, "Prompt plus completion tokens per minute at most (0: no limit; prompts estimated), a provider's TPM."
    )
    timeout_s: float = documented(120.0, "Read/write timeout of one request.")
    connect_timeout_s: float = documented(10.0, "Connect timeout of one request.")
    max_attempts: int = documented(5, "Attempts per request, the first included.")
    backoff_initial_s: float = documented(0.5, "Scale of the exponential backoff.")
    backoff_max_s: float = documented(30.0, "Longest backoff between attempts.")
    max_retry_after_s: float = documented(120.0, "Longest Retry-After honoured.")


DEFAULT_POLICY = RetryPolicy()


@dataclass
class Counter:
    requests: int = 0
    retries: int = 0


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


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from sync code, also when the caller already has a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


# httpcore's pool looks at every connection for every request it places (a cost that grows with the square of
# the requests in flight: at 64 on one client, a loopback server answering at once got ~150 calls/s, 340-400 on
# sixteen clients of four). Many requests in flight share several small pools instead of one large one.
CONNECTIONS_PER_CLIENT = 4


def new_client(policy: RetryPolicy, api_key: str | None, connections: int | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    size = connections or policy.max_concurrency
    return httpx.AsyncClient(
        headers=headers,
        timeout=httpx.Timeout(policy.timeout_s, connect=policy.connect_timeout_s),
        limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
    )


@contextlib.asynccontextmanager
async def client_pool(policy: RetryPolicy, api_key: str | None, workers: int) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Clients for `workers` concurrent requests, CONNECTIONS_PER_CLIENT each (worker k uses client k % len)."""
    count = max(1, -(-workers // CONNECTIONS_PER_CLIENT))
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(new_client(policy, api_key, min(workers, CONNECTIONS_PER_CLIENT)))
            for _ in range(count)
        ]


def no_redaction(text: str) -> str:
    return text


async def post_once(client: httpx.AsyncClient, url: str, body: dict, policy: RetryPolicy) -> Any:
    """One POST; the parsed JSON body, or RetryableError / FatalError."""
    try:
        response = await client.post(url, json=body)
    except httpx.TimeoutException as exc:
        raise RetryableError(f"timed out ({type(exc).__name__}, timeout {policy.timeout_s}s)") from None
    except httpx.TransportError as exc:
        raise RetryableError(f"transport error ({type(exc).__name__}: {exc})") from None
    status = response.status_code
    if status in RETRY_STATUSES:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        raise RetryableError(f"HTTP {status}", retry_after=retry_after, status=status)
    if status >= 400:
        raise FatalError(f"HTTP {status}: {response.text[:300]}", status=status)
    try:
        return response.json()
    except ValueError:
        size = len(response.content)
        raise RetryableError(f"HTTP {status} with a body that is not valid JSON ({size} bytes)") from None


async def post_with_retries(
    client: httpx.AsyncClient,
    url: str,
    body: dict,
    policy: RetryPolicy,
    counter: Counter | None = None,
    parse: Callable[[Any], T] | None = None,
    redact: Callable[[str], str] = no_redaction,
    who: str = "request",
    flow: AdaptiveLimit | None = None,
) -> T:
    """POST with the policy's retries; `parse` runs inside each attempt (a malformed body is retried).

    Raises CallFailed with a clear, credential-free message once the attempts are spent. With `flow`, every
    answer and every 429/503 is reported to it (the requests in flight follow what the server says).
    """
    counter = counter if counter is not None else Counter()

    def note_retry(state: RetryCallState) -> None:
        counter.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        if flow is not None and getattr(exc, "status", None) in THROTTLE_STATUSES:
            flow.throttled()
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "%s failed (%s); attempt %d/%d, retrying in %.2fs",
            who,
            redact(str(exc)),
            state.attempt_number,
            policy.max_attempts,
            wait,
        )

    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.max_attempts),
        wait=RetryAfterWait(policy.backoff_initial_s, policy.backoff_max_s, policy.max_retry_after_s),
        retry=retry_if_exception_type(RetryableError),
        before_sleep=note_retry,
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                counter.requests += 1
                data = await post_once(client, url, body, policy)
                if flow is not None:
                    flow.succeeded()
                return parse(data) if parse is not None else data
    except RetryableError as exc:
        raise CallFailed(redact(f"gave up after {policy.max_attempts} attempts to {url}: {exc}")) from None
    except FatalError as exc:
        raise CallFailed(redact(f"request to {url} failed: {exc}"), refused=True, status=exc.status) from None
    raise AssertionError("unreachable: tenacity reraises")
