"""Rate parsing, the burst-free shared limiter, the 429 cool-down and backoff bounds.

Timing assertions here are lower bounds only (a limiter can be late, never early), so
they cannot pass or fail by luck."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import math
import random
import time

import pytest

from runner.core.clock import ManualClock
from runner.core.rates import Rate
from runner.engine.rate_limits import EndpointLimiter, take_amount


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
    slot = 1 / (50 * (1 - EndpointLimiter.PACE_MARGIN))
    start = time.monotonic()
    stamps = []
    for _ in range(6):
        await limiter.acquire()
        stamps.append(time.monotonic() - start)
    # AsyncLimiter(R, period) would let the first R through at once; ours spaces them.
    assert stamps[-1] >= 5 * slot * 0.99
    gaps = [later - earlier for earlier, later in itertools.pairwise(stamps)]
    assert min(gaps) >= slot * (1 - EndpointLimiter.LATE_SLACK) * 0.99


class FakeClock:
    """Stands in for the event loop's clock inside the limiter's bucket, so the grid's
    arithmetic is checked at exact instants instead of by sleeping."""

    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now

    def is_closed(self) -> bool:
        return False


def _bucket_on(clock: FakeClock, per_second: float):
    bucket = EndpointLimiter(Rate(per_second, 1), "test")._limiter
    bucket._event_loop = clock
    return bucket


def _take_now(bucket) -> bool:
    """Take a slot if one is free at this instant (what acquire() does without waiting)."""
    amount = take_amount(bucket)
    if not bucket.has_capacity(amount):
        return False
    with pytest.raises(StopIteration):
        bucket.acquire(amount).send(None)  # completes without suspending
    return True


def test_a_late_wake_up_does_not_push_the_grid_back():
    clock, per_second = FakeClock(), 10.0
    bucket = _bucket_on(clock, per_second)
    slot = 1 / (per_second * (1 - EndpointLimiter.PACE_MARGIN))
    assert _take_now(bucket)
    clock.now = 0.99 * slot
    assert not _take_now(bucket)  # never early
    clock.now = 1.2 * slot  # the worker woke a fifth of a slot late
    assert _take_now(bucket)
    clock.now = 1.99 * slot
    assert not _take_now(bucket)
    clock.now = 2.0 * slot + 1e-9  # still on the grid: the lateness was not lost
    assert _take_now(bucket)


def test_after_a_quiet_spell_the_next_two_are_a_whole_slot_apart():
    clock, per_second = FakeClock(), 10.0
    bucket = _bucket_on(clock, per_second)
    slot = 1 / (per_second * (1 - EndpointLimiter.PACE_MARGIN))
    assert _take_now(bucket)
    clock.now = 5 * slot  # idle: the bucket is empty, and is taken whole
    assert _take_now(bucket)
    clock.now = 5.9 * slot
    assert not _take_now(bucket)  # no catching up in a burst
    clock.now = 6 * slot + 1e-9
    assert _take_now(bucket)


@pytest.mark.parametrize(("limit", "window_s"), [(1000, 10.0), (20, 60.0), (100, 1.0)])
def test_a_busy_pace_never_puts_one_too_many_in_the_servers_window(limit, window_s):
    """Workers that wake up to a quarter slot late, at the configured rate = the
    server's limit: no sliding window ever holds more than the limit."""
    clock, per_second = FakeClock(), limit / window_s
    bucket = _bucket_on(clock, per_second)
    slot = 1 / per_second
    lateness = random.Random(7)
    sends: list[float] = []
    while len(sends) < 3 * limit:
        step = slot / 100
        clock.now = math.ceil(clock.now / step) * step  # the first instant a slot is free
        while not _take_now(bucket):
            clock.now += step
        sends.append(clock.now)
        clock.now += lateness.uniform(0, 0.25 * slot)
    assert len(sends) / (sends[-1] - sends[0]) <= per_second
    most = max(
        bisect.bisect_right(sends, start + window_s) - index for index, start in enumerate(sends)
    )
    assert most <= limit


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


async def test_fresh_429s_slow_the_rate_and_clean_traffic_earns_it_back():
    clock = ManualClock()
    limiter = EndpointLimiter(Rate(10, 1), "submit", clock=clock)
    limiter.cool_down(retry_after=60)  # a fresh 429: 10/s -> 8/s, and a minute's pause
    assert limiter.effective_per_second == pytest.approx(8.0)
    limiter.cool_down(retry_after=60)  # answers a request sent before the pause: no change
    assert limiter.effective_per_second == pytest.approx(8.0)
    for _ in range(20):
        clock.advance(120)  # the pause is over: the next 429 is a fresh sign again
        limiter.cool_down(retry_after=0)
    assert limiter.effective_per_second == pytest.approx(2.5)  # never below a quarter
    clock.advance(120)
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
