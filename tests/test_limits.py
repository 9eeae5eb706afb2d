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
