"""Show that an overnight run is alive: a live panel on a terminal, plain lines elsewhere.

The engine hands a :class:`Snapshot` to a progress *sink* every ``interval_s``. On a
TTY, :class:`LiveProgress` redraws one panel in place (rich): counts per status,
submit and poll rates, spend so far and an ETA. Under nohup, cron or CI,
:class:`LineProgress` logs one plain line every N seconds, which also lands in
``run.log``. Sinks only read; they never touch the ledger.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass
from typing import Protocol

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from runner.core.logs import console_to
from runner.core.records import FINAL, TaskStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    counts: dict[str, int]
    in_flight: int  # tasks being polled
    created: int  # tasks created this run
    polls: int  # Task Result calls this run
    spent_usd: float  # estimated, the whole folder
    elapsed_s: float
    submit_rate_per_s: float  # the configured limit, for the ETA
    recent_task_s: tuple[float, ...] = ()  # submit-to-final times of tasks this run

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def done(self) -> int:
        return sum(self.counts.get(s, 0) for s in FINAL)

    @property
    def eta_s(self) -> float | None:
        """Pending tasks at the submit rate, plus the typical time of a task after its
        submit. Unknown until one task has finished this run."""
        if self.done == self.total:
            return 0.0
        if not self.recent_task_s:
            return None
        pending = self.counts.get(TaskStatus.PENDING, 0)
        return pending / self.submit_rate_per_s + statistics.median(self.recent_task_s)


def progress_line(counts: dict[str, int], in_flight: int) -> str:
    """``5/8 done (3 queued, 5 succeeded); 3 being polled``: the line every summary starts with."""
    total = sum(counts.values())
    final = sum(counts.get(s, 0) for s in FINAL)
    parts = ", ".join(f"{counts[s]} {s}" for s in TaskStatus if counts.get(s))
    return f"{final}/{total} done ({parts}); {in_flight} being polled"


def status_line(snapshot: Snapshot) -> str:
    return (
        f"{progress_line(snapshot.counts, snapshot.in_flight)}; "
        f"{snapshot.created} created, {snapshot.polls} polls this run; "
        f"spent ~ ${snapshot.spent_usd:,.2f}; eta {human_duration(snapshot.eta_s)}"
    )


class ProgressSink(Protocol):
    interval_s: float

    def start(self) -> None: ...

    def update(self, snapshot: Snapshot) -> None: ...

    def stop(self, snapshot: Snapshot) -> None: ...


class LineProgress:
    """One log line every ``interval_s`` seconds: for logs read later, not watched."""

    def __init__(self, interval_s: float = 30.0):
        self.interval_s = interval_s

    def start(self) -> None:
        pass

    def update(self, snapshot: Snapshot) -> None:
        log.info("progress: %s", status_line(snapshot))

    def stop(self, snapshot: Snapshot) -> None:
        pass


class LiveProgress:
    """A panel redrawn in place on a terminal; log records print above it."""

    def __init__(
        self,
        console: Console | None = None,
        interval_s: float = 0.5,
        console_level: int = logging.WARNING,
    ):
        self.console = console or Console(stderr=True)
        self.interval_s = interval_s
        self.console_level = console_level
        self._live = Live(console=self.console, auto_refresh=False, transient=False)
        self._previous: tuple[float, int, int] | None = None
        self._rates = (0.0, 0.0)

    def start(self) -> None:
        self._live.start()
        self._restore = console_to(self._live.console.file, self.console_level)

    def update(self, snapshot: Snapshot) -> None:
        self._live.update(self.render(snapshot), refresh=True)

    def stop(self, snapshot: Snapshot) -> None:
        self._live.update(self.render(snapshot), refresh=True)
        self._live.stop()
        self._restore()

    def render(self, snapshot: Snapshot) -> Group:
        now = time.monotonic()
        if self._previous is not None and now > self._previous[0]:
            seconds = now - self._previous[0]
            self._rates = (
                (snapshot.created - self._previous[1]) / seconds,
                (snapshot.polls - self._previous[2]) / seconds,
            )
        self._previous = (now, snapshot.created, snapshot.polls)
        counts = Table.grid(padding=(0, 2))
        shown = [s for s in TaskStatus if snapshot.counts.get(s)]
        counts.add_row(*(Text(str(s), style=_STYLE.get(s, "")) for s in shown))
        counts.add_row(*(str(snapshot.counts[s]) for s in shown))
        bar = ProgressBar(total=max(snapshot.total, 1), completed=snapshot.done, width=40)
        line = Text(
            f"{snapshot.done}/{snapshot.total} done · elapsed {human_duration(snapshot.elapsed_s)}"
            f" · eta {human_duration(snapshot.eta_s)}\n"
            f"submits {self._rates[0]:.1f}/s · polls {self._rates[1]:.1f}/s · "
            f"{snapshot.in_flight} in flight · spent ~ ${snapshot.spent_usd:,.2f}"
        )
        return Group(bar, line, counts)


_STYLE = {
    TaskStatus.SUCCEEDED: "green",
    TaskStatus.FAILED: "red",
    TaskStatus.UNKNOWN: "yellow",
    TaskStatus.EXPIRED: "magenta",
    TaskStatus.STALLED: "dark_orange",
    TaskStatus.LOST: "dark_orange",
    TaskStatus.PROCESSING: "cyan",
    TaskStatus.QUEUED: "blue",
}


def human_duration(seconds: float | None) -> str:
    """``4m05s``, ``2h10m``; ``estimating`` when there is no figure yet."""
    if seconds is None:
        return "estimating"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
