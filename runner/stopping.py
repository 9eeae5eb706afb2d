"""One switch that asks every stage to stop *starting* work, and remembers why.

Stopping never cuts a request in half: a submit already sent is allowed to get its
answer, so that its task id is recorded instead of turning into an ``unknown``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


class StopSwitch:
    def __init__(self) -> None:
        self.reason: str | None = None
        self.error: BaseException | None = None
        self._listeners: list[Callable[[], None]] = []
        self._event = asyncio.Event()

    @property
    def is_set(self) -> bool:
        return self.reason is not None

    def trip(self, reason: str, error: BaseException | None = None) -> None:
        if self.reason is not None:
            return  # the first reason is the one the user needs to read
        self.reason, self.error = reason, error
        self._event.set()
        for listener in self._listeners:
            listener()

    def on_trip(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` when the switch trips (to wake a stage that is waiting)."""
        self._listeners.append(listener)

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake at once if the switch trips (a backoff must not delay a stop)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)
