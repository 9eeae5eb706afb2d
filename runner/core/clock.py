"""One clock for the runner, injected, so that tests move time instead of sleeping.

Two readings: ``time()`` is the wall clock (what the ledger records, and deadlines
that must survive a restart); ``monotonic()`` measures intervals. Timers that wait
(the event loop's) still run on real time; what a test moves is what the runner
*reads*: a deadline passes, a grace period ends, at once.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float: ...
    def monotonic(self) -> float: ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM_CLOCK = SystemClock()


class ManualClock:
    """The real clock plus an offset a test moves with :meth:`advance`."""

    def __init__(self) -> None:
        self.offset = 0.0

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def time(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic() + self.offset
