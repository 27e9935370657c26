"""How many requests a client sends at once, and how fast: what the server says decides, within the user's limits.

`AdaptiveLimit` is TCP's rule for a remote API: start with a few requests in flight, double each round the
server keeps up (slow start) and add one a round after the first push-back, halve on a 429 or 503 (once per
`cooldown_s`, so one burst of refusals halves once). A client sized for a remote API (tens of requests in
flight) then settles where a local or rate-limited server is happy instead of hammering it with retries.
`RateLimit` holds the user's requests-per-minute and tokens-per-minute limits (what providers quote) as two
token buckets, so a stage never sends what the account would refuse.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

THROTTLE_STATUSES = frozenset({429, 503})  # the server asks for less: fewer requests in flight


@dataclass
class AdaptiveLimit:
    """Requests in flight between `floor` and `ceiling`: raised while the server keeps up, halved on push-back."""

    ceiling: int
    start: int = 8
    floor: int = 1
    cooldown_s: float = 1.0
    limit: int = field(init=False)
    in_flight: int = field(init=False, default=0)
    throttles: int = field(init=False, default=0)  # push-backs that cut the limit (for stats and tests)
    peak: int = field(init=False, default=0)  # the highest limit reached
    _ok_in_round: int = field(init=False, default=0)
    _slow_start: bool = field(init=False, default=True)
    _cut_at: float = field(init=False, default=float("-inf"))
    _changed: asyncio.Condition | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.limit = max(self.floor, min(self.start, self.ceiling))
        self.peak = self.limit

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:  # made inside the running loop
            self._changed = asyncio.Condition()
        return self._changed

    async def acquire(self) -> None:
        changed = self._condition()
        async with changed:
            await changed.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1

    async def release(self) -> None:
        changed = self._condition()
        async with changed:
            self.in_flight -= 1
            changed.notify_all()

    def succeeded(self) -> None:
        """A request the server answered: a full round of them raises the limit."""
        self._ok_in_round += 1
        if self._ok_in_round >= self.limit:
            self._ok_in_round = 0
            self.limit = min(self.ceiling, self.limit * 2 if self._slow_start else self.limit + 1)
            self.peak = max(self.peak, self.limit)

    def throttled(self) -> None:
        """The server said 429 or 503: halve the limit (once per cooldown) and grow slowly from there."""
        now = time.monotonic()
        self._slow_start = False
        if now - self._cut_at < self.cooldown_s:
            return
        self._cut_at, self._ok_in_round = now, 0
        self.limit = max(self.floor, self.limit // 2)
        self.throttles += 1


@dataclass
class RateLimit:
    """Requests and tokens per minute (0: no limit), as token buckets that refill continuously."""

    requests_per_minute: float = 0.0
    tokens_per_minute: float = 0.0
    waited_s: float = field(init=False, default=0.0)  # time spent waiting for the buckets (for stats)
    _requests: float = field(init=False)
    _tokens: float = field(init=False)
    _at: float = field(init=False, default_factory=time.monotonic)
    _lock: asyncio.Lock | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._requests, self._tokens = self.requests_per_minute, self.tokens_per_minute

    def _refill(self, now: float) -> None:
        elapsed, self._at = now - self._at, now
        self._requests = min(self.requests_per_minute, self._requests + elapsed * self.requests_per_minute / 60)
        self._tokens = min(self.tokens_per_minute, self._tokens + elapsed * self.tokens_per_minute / 60)

    @property
    def active(self) -> bool:
        """Whether either limit is set (without one, `acquire` has nothing to wait for)."""
        return bool(self.requests_per_minute or self.tokens_per_minute)

    def delay(self, tokens: int, now: float) -> float:
        """Seconds until one request of `tokens` fits both buckets (0: now)."""
        self._refill(now)
        waits = [0.0]
        if self.requests_per_minute:
            waits.append((1 - self._requests) * 60 / self.requests_per_minute)
        if self.tokens_per_minute:
            # A request larger than the whole minute's allowance waits for a full bucket, then goes.
            needed = min(tokens, self.tokens_per_minute)
            waits.append((needed - self._tokens) * 60 / self.tokens_per_minute)
        return max(waits)

    async def acquire(self, tokens: int) -> None:
        if not self.active:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # in arrival order: one waiter at a time
            while (wait := self.delay(tokens, time.monotonic())) > 0:
                self.waited_s += wait
                await asyncio.sleep(wait)
            self._requests -= 1 if self.requests_per_minute else 0
            self._tokens -= min(tokens, self.tokens_per_minute) if self.tokens_per_minute else 0
