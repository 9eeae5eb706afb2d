"""One switch that asks every stage to stop *starting* work, and remembers why.

Stopping never cuts a request in half: a submit already sent is allowed to get its
answer, so that its task id is recorded instead of turning into an ``unknown``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator

from runner.core.errors import Interrupted

log = logging.getLogger(__name__)

# Ctrl-C, a polite kill, and a hang-up (the terminal or SSH session closed mid-run):
# each one stops starting work and lets a submit already sent get its answer.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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


@contextlib.contextmanager
def stop_on_signals(stop: StopSwitch, on_first: Callable[[str], None]) -> Iterator[None]:
    """Ctrl-C, SIGTERM or SIGHUP trips ``stop``: no new submit, poll or download starts, and a
    submit already sent gets its answer, so its task id is saved rather than lost to
    ``unknown``. A second signal cancels the current task at once; every committed
    transition is still in the ledger, so that too is resumable.

    Must be entered from the coroutine that should be cancelled on the second signal."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only (a library call run from a thread)
        return
    loop = asyncio.get_running_loop()
    current = asyncio.current_task()
    received: list[str] = []

    def handle(signum: signal.Signals) -> None:
        received.append(signum.name)
        if len(received) > 1:
            log.warning("%s again: stopping at once", signum.name)
            if current is not None:
                current.cancel()
            return
        on_first(signum.name)
        stop.trip(f"interrupted by {signum.name}", Interrupted(signum.name))

    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, handle, signum)
    try:
        yield
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
            # asyncio puts back the default (SIGTERM would kill again); the process's own
            # handler comes back instead, so a signal while the reports are written is
            # still an interrupt, not a kill.
            if previous[signum] is not None:
                signal.signal(signum, previous[signum])
