"""Rate parsing, the burst-free shared limiter, the 429 cool-down and backoff bounds.

Timing assertions here are lower bounds only (a limiter can be late, never early), so
they cannot pass or fail by luck."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from runner.limits import EndpointLimiter, Rate, backoff_delay


@pytest.mark.parametrize(
    ("text", "per_second"),
    [
        ("20/min", 20 / 60),
        ("5/s", 5.0),
        ("1.5/sec", 1.5),
        ("600/hour", 600 / 3600),
        ("10 / minute", 10 / 60),
    ],
)
def test_rates_parse(text, per_second):
    assert Rate.parse(text).per_second == pytest.approx(per_second)


@pytest.mark.parametrize("text", ["20", "0/min", "5/fortnight", "fast"])
def test_bad_rates_are_refused(text):
    with pytest.raises(ValueError, match="20/min or 5/s"):
        Rate.parse(text)


async def test_no_burst_requests_are_spaced_evenly_from_the_first():
    limiter = EndpointLimiter(Rate(50, 1), "test")
    start = time.monotonic()
    stamps = []
    for _ in range(6):
        await limiter.acquire()
        stamps.append(time.monotonic() - start)
    # AsyncLimiter(R, period) would let the first R through at once; ours spaces them.
    assert stamps[-1] >= 5 * 0.02 * 0.95
    assert all(later - earlier >= 0.02 * 0.9 for earlier, later in itertools.pairwise(stamps))


async def test_workers_share_one_limiter():
    limiter = EndpointLimiter(Rate(100, 1), "test")
    start = time.monotonic()
    await asyncio.gather(*(limiter.acquire() for _ in range(11)))
    assert time.monotonic() - start >= 10 * 0.01 * 0.95


async def test_a_cool_down_pauses_every_worker_for_at_least_retry_after():
    limiter = EndpointLimiter(Rate(1000, 1), "test")
    await limiter.acquire()
    pause = limiter.cool_down(retry_after=0.2)
    assert pause >= 0.2
    start = time.monotonic()
    await asyncio.gather(*(limiter.acquire() for _ in range(3)))
    assert time.monotonic() - start >= 0.2 * 0.95
    assert limiter.cool_downs == 1


def test_backoff_grows_is_capped_and_respects_the_floor():
    assert 0.5 <= backoff_delay(0) <= 1.0
    assert 4.0 <= backoff_delay(3) <= 8.0
    assert 30.0 <= backoff_delay(20) <= 60.0
    assert backoff_delay(0, floor=5.0) >= 5.5


async def test_fresh_429s_slow_the_rate_and_clean_traffic_earns_it_back():
    limiter = EndpointLimiter(Rate(10, 1), "submit")
    limiter.cool_down(retry_after=0)  # a fresh 429: 10/s -> 8/s
    assert limiter.effective_per_second == pytest.approx(8.0)
    limiter._paused_until = asyncio.get_running_loop().time() + 60
    limiter.cool_down(retry_after=0)  # answers a request sent before the pause: no change
    assert limiter.effective_per_second == pytest.approx(8.0)
    limiter._paused_until = 0.0
    for _ in range(20):
        limiter.cool_down(retry_after=0)
        limiter._paused_until = 0.0
    assert limiter.effective_per_second == pytest.approx(2.5)  # never below a quarter
    # The slower pace is what acquire() hands out: 3 gaps at 2.5/s, not at 10/s (0.3 s).
    # Only a lower bound: a loaded machine can make sleeps longer, never shorter.
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(4):
        await limiter.acquire()
    assert loop.time() - started >= 3 / 2.5 * 0.95
    for _ in range(int(2.5 * EndpointLimiter.RAMP_AFTER_S)):  # ten seconds' worth, clean
        limiter.succeeded()
    assert limiter.effective_per_second == pytest.approx(2.5 / 0.8)
