"""Requests in flight follow what the server says; requests and tokens per minute stay under the user's limits."""

import asyncio
import time

import pytest

from reflection_assets.flow_control import AdaptiveLimit, RateLimit


def test_the_limit_doubles_while_the_server_keeps_up_then_grows_by_one_after_a_push_back():
    flow = AdaptiveLimit(ceiling=64, start=8, cooldown_s=0.0)
    for _ in range(8):
        flow.succeeded()
    assert flow.limit == 16  # one full round answered: slow start doubles
    for _ in range(16 + 32):
        flow.succeeded()
    assert flow.limit == 64 == flow.peak  # never past the ceiling
    flow.throttled()
    assert (flow.limit, flow.throttles) == (32, 1)
    for _ in range(32):
        flow.succeeded()
    assert flow.limit == 33  # after a push-back: one more per round


def test_one_burst_of_refusals_halves_once_and_the_floor_holds():
    flow = AdaptiveLimit(ceiling=64, start=64, cooldown_s=60.0)
    for _ in range(10):
        flow.throttled()
    assert (flow.limit, flow.throttles) == (32, 1)
    low = AdaptiveLimit(ceiling=4, start=1, cooldown_s=0.0)
    low.throttled()
    assert low.limit == 1


def test_no_more_requests_in_flight_than_the_limit():
    async def scenario() -> int:
        flow = AdaptiveLimit(ceiling=3, start=3)
        seen = 0

        async def one() -> None:
            nonlocal seen
            await flow.acquire()
            seen = max(seen, flow.in_flight)
            await asyncio.sleep(0.01)
            await flow.release()

        await asyncio.gather(*(one() for _ in range(20)))
        return seen

    assert asyncio.run(scenario()) == 3


def test_requests_per_minute_space_the_requests_out():
    rate = RateLimit(requests_per_minute=600)  # a bucket of 600, refilled at 10 a second
    rate._requests = 1.0  # as if the minute's allowance were spent but one

    async def send(n: int) -> float:
        started = time.monotonic()
        for _ in range(n):
            await rate.acquire(tokens=10)
        return time.monotonic() - started

    took = asyncio.run(send(4))
    assert took == pytest.approx(0.3, abs=0.15)  # one at once, three more at 10 a second


def test_tokens_per_minute_wait_for_room_and_an_oversized_request_still_goes():
    rate = RateLimit(tokens_per_minute=6000)  # 100 tokens a second
    now = time.monotonic()
    rate._tokens, rate._at = 50.0, now
    assert rate.delay(150, now) == pytest.approx(1.0)  # 100 more tokens needed
    assert rate.delay(10_000, now) == pytest.approx((6000 - 50) / 100)  # waits for a full bucket, not forever
    assert RateLimit().delay(10**9, now) == 0  # no limits: no wait
