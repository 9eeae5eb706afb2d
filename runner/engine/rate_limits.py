"""Rate limits shared by all workers of one endpoint class, and the backoff rule.

Exact semantics of :class:`EndpointLimiter`:
- requests go on an even grid, one every ``1 / pace`` seconds, never two at once: the
  bucket holds one request plus ``LATE_SLACK`` of a slot, so it never lets a burst
  through (``AsyncLimiter(R, 60)`` would let R go at once and can double the rate a
  server sees in its first window), and an empty bucket is taken whole, so the first
  two requests after a quiet spell are a full slot apart too;
- a worker that wakes late (asyncio timers fire up to a millisecond late, more on a
  busy loop) does not push the grid back: the slack carries up to a quarter slot of
  lateness into the next slot. A bucket of exactly one loses every late wake-up for
  good; measured at 100/s on a busy loop, 2,000 submits took 21.5 s instead of 20;
- the pace is ``PACE_MARGIN`` under the configured rate. At exactly a server's limit,
  whether the request that closes a sliding window is one too many depends on
  microseconds of network jitter, a coin flip per request; 2% under, it never is;
- retries take a slot like any other request;
- :meth:`EndpointLimiter.cool_down` (on a 429) pauses *every* worker of the class until
  the pause ends: ``Retry-After`` when the API sends it, exponential backoff otherwise,
  plus a little jitter so the workers don't come back in a stampede (``runner.engine.retry``
  decides the waits; a Retry-After is capped there).
"""

from __future__ import annotations

import asyncio
import random

from aiolimiter import AsyncLimiter

from runner.core.clock import SYSTEM_CLOCK, Clock
from runner.core.rates import Rate
from runner.engine.retry import backoff_delay, capped_retry_after


def take_amount(bucket: AsyncLimiter) -> float:
    """What one request takes from its bucket: one, or the whole bucket when it is empty
    (the first request, or after a quiet spell), so no request follows it early."""
    return bucket.max_rate if bucket.has_capacity(bucket.max_rate) else 1


class EndpointLimiter:
    """The one limiter of an endpoint class (submit, or poll), shared by all its workers.

    It adapts: a 429 that arrives outside a pause (a fresh sign that the server's limit
    is below ours) lowers the effective rate by ``SLOW_DOWN``, down to ``MIN_FACTOR`` of
    the configured rate; 429s answering requests sent before the pause don't count
    again. After ``RAMP_AFTER_S`` seconds' worth of requests go through without a 429,
    the rate steps back up towards the configured one.
    """

    SLOW_DOWN = 0.8
    MIN_FACTOR = 0.25
    RAMP_AFTER_S = 10.0
    PACE_MARGIN = 0.02
    LATE_SLACK = 0.25

    def __init__(
        self,
        rate: Rate,
        name: str,
        rng: random.Random | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ):
        self.rate = rate
        self.name = name
        self.rng = rng or random.Random()
        self.clock = clock  # what the 429 pauses are measured on
        self.factor = 1.0
        self._limiter = self._bucket()
        self._paused_until = 0.0
        self._consecutive_429 = 0
        self._clean_since_change = 0
        self.cool_downs = 0

    @property
    def effective_per_second(self) -> float:
        return self.rate.per_second * self.factor

    async def acquire(self) -> None:
        while True:
            pause = self._paused_until - self.clock.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
                continue
            limiter = self._limiter
            await limiter.acquire(take_amount(limiter))
            if limiter is not self._limiter:
                continue  # the rate changed while waiting: take a slot at the new pace
            if self._paused_until <= self.clock.monotonic():
                return
            # A 429 arrived while this worker waited for its slot: honour the pause too.

    def cool_down(self, retry_after: float | None) -> float:
        """Pause all workers after a 429; returns the pause in seconds."""
        self.cool_downs += 1
        self._consecutive_429 += 1
        now = self.clock.monotonic()
        if now >= self._paused_until:
            self._set_factor(max(self.MIN_FACTOR, self.factor * self.SLOW_DOWN))
        retry_after = capped_retry_after(retry_after)
        if retry_after is not None:
            pause = retry_after + self.rng.uniform(0, min(1.0, 0.1 * (retry_after or 1.0)))
        else:
            pause = backoff_delay(self._consecutive_429 - 1, self.rng)
        self._paused_until = max(self._paused_until, now + pause)
        return pause

    def succeeded(self) -> None:
        """A request went through: the next 429 starts the backoff from the bottom again,
        and enough of them in a row earn back some of the rate."""
        self._consecutive_429 = 0
        if self.factor >= 1.0:
            return
        self._clean_since_change += 1
        if self._clean_since_change >= self.effective_per_second * self.RAMP_AFTER_S:
            self._set_factor(min(1.0, self.factor / self.SLOW_DOWN))

    def _set_factor(self, factor: float) -> None:
        self.factor = factor
        self._clean_since_change = 0
        self._limiter = self._bucket()

    def _bucket(self) -> AsyncLimiter:
        """One request plus ``LATE_SLACK`` of a slot, refilled at the pace."""
        pace = self.effective_per_second * (1 - self.PACE_MARGIN)
        return AsyncLimiter(1 + self.LATE_SLACK, (1 + self.LATE_SLACK) / pace)
