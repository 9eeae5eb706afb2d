"""When to look at a task again: the poll schedule's decisions, as plain functions.

Polls are a budget (Task Result is rate limited), and a finished task should be seen
within a second. What the API says about time is used in this order:

1. ``eta``: poll when it says the task will be done (or, when the progress below
   puts the finish inside the eta's last whole second, at the progress's time);
2. ``progress_percent`` with the time the task has been processing (the API's own
   submit/execute times, so no clock skew). A whole percent ``p`` after ``t`` seconds
   puts the finish between ``100t/(p+1)`` and ``100t/p``. When that window is narrow
   (``finish_window_s``), poll at its end, but never more than ``detect_within_s``
   after its start: a task done early in the window waits at most that long to be
   seen, and one still running answers with a progress in the nineties, which pins
   its finish for one more poll. (Polling at the end alone left a 4 s window's tasks
   waiting up to 4 s: the bench's no-eta p95 went from 3.3 to 3.0 s at the same 2.08
   polls per task.) When the window is wide (an early look), look again first, at
   the time a look would narrow it enough (the window shrinks as ``1/t``), not at its
   start: a look that early is cheap to place where the poll budget has room;
3. what this batch's tasks took, *as the API reports it* (submit to complete): poll
   when the next tenth of the batch would be done;
4. otherwise a backoff that grows while the task says nothing.

Never learned from when we happened to notice a task done: a task seen on its first
poll can never look quicker than that poll, so such learning only ratchets upward.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass

LEARN_AFTER = 20  # tasks the API reported finished before the batch's spread is trusted
_DECILES = tuple(i / 10 for i in range(1, 10))


class Durations:
    """The batch's recent task durations (seconds from submit to complete, as the API
    reports them), and the deciles that the schedule reads."""

    def __init__(self, keep: int = 200):
        self._recent: deque[float] = deque(maxlen=keep)
        self._deciles: list[float] | None = None
        self._added = 0

    def add(self, seconds: float) -> None:
        self._recent.append(seconds)
        self._added += 1
        if self._added % 10 == 0:
            self._deciles = None  # re-learn every ten reports, not on every one

    @property
    def learned(self) -> bool:
        return len(self._recent) >= LEARN_AFTER

    def deciles(self) -> list[float]:
        if self._deciles is None:
            ordered = sorted(self._recent)
            last = len(ordered) - 1
            self._deciles = [ordered[min(last, int(q * len(ordered)))] for q in _DECILES]
        return self._deciles

    def quickest_tenth(self) -> float | None:
        """By when the quickest tenth of the batch was done: the first look at a task."""
        return self.deciles()[0] if self.learned else None

    def next_after(self, age_s: float) -> float | None:
        """When the next tenth of the batch is done, for a task already ``age_s`` old."""
        if not self.learned:
            return None
        deciles = self.deciles()
        index = bisect.bisect_right(deciles, age_s)
        return deciles[index] if index < len(deciles) else None


@dataclass(frozen=True)
class Seen:
    """What one answer said about a running task, and how old the task is."""

    age_s: float  # since our submit
    eta_s: float | None
    progress_percent: float | None
    queued_s: float | None  # the API's own execute minus submit time, when it says


def next_delay(
    seen: Seen,
    durations: Durations,
    quiet_polls: int,
    *,
    min_s: float,
    max_s: float,
    growth: float,
    finish_window_s: float,
    detect_within_s: float,
) -> tuple[float, bool]:
    """Seconds until the next poll of a task still running (see the module docstring),
    and whether that poll is timed to find it done (by its eta, or by a progress precise
    enough): such polls go before looks that only gather information. The knobs have
    no defaults here: :class:`PollPolicy` holds them, in one place."""
    delay: float | None = None
    likely_done = False
    window = _finish_window(seen)
    if seen.eta_s and seen.eta_s > 0:
        delay, likely_done = _from_eta(seen.eta_s, window), True
    elif window is not None:
        delay, likely_done = _from_progress(*window, finish_window_s, detect_within_s)
    if delay is None:
        finish = durations.next_after(seen.age_s)
        if finish is not None:
            delay = finish - seen.age_s
    if delay is None:
        delay = min_s * growth**quiet_polls
    return min(max_s, max(min_s, delay)), likely_done


def _finish_window(seen: Seen) -> tuple[float, float, float] | None:
    """Seconds processed, and the earliest and latest total processing time that a
    whole-number progress allows, or None when the answer has no usable progress."""
    percent = seen.progress_percent
    if not percent or not 0 < percent < 100 or seen.queued_s is None:
        return None
    processing = seen.age_s - seen.queued_s
    if processing <= 0:
        return None
    return processing, 100 * processing / (percent + 1), 100 * processing / percent


def _from_eta(eta_s: float, window: tuple[float, float, float] | None) -> float:
    """The next poll from an ``eta``: whole seconds, so the finish is somewhere in the
    second before it. A progress window that ends inside that second pins it closer (a
    task 60% done after 2.5 s of processing is done within 1.67 s, not 2 s): half a
    second of detection saved per task at no cost in polls. A progress that disagrees
    with the eta is ignored: the eta is the API's own word on time. (Were the eta
    rounded down instead, a true progress would never end before it, and it stands.)"""
    if window is None:
        return eta_s
    processing, _, latest = window
    by_progress = latest - processing
    return by_progress if eta_s - 1 <= by_progress < eta_s else eta_s


def _from_progress(
    processing_s: float, earliest: float, latest: float, window_s: float, within_s: float
) -> tuple[float, bool]:
    """The next poll from a whole-number progress (see the module docstring)."""
    if latest - earliest <= window_s:
        return min(latest, earliest + within_s) - processing_s, True
    # The window after t seconds is about latest**2 / (100 t): narrow enough at
    # latest**2 / (100 window), unless the earliest finish comes first.
    narrow_at = min(latest * latest / (100 * window_s), earliest)
    return narrow_at - processing_s, False


@dataclass(frozen=True)
class PollPolicy:
    """When to look again. Kling takes minutes, so the defaults are patient."""

    first_poll_s: float = 5.0  # after a submit, the first look (to learn the eta)
    min_interval_s: float = 1.0
    max_interval_s: float = 60.0
    growth: float = 1.6  # backoff factor while a task reports no eta
    # Seconds from submit (or, for a task found stalled at start, from this run's first
    # look) after which a task the API still runs, or whose polls fail, is ``stalled``.
    task_timeout_s: float = 1800.0
    # A TASK_NOT_FOUND for an id the API gave us is not proof: a new task can lag behind
    # in Task Result (for minutes), and a proxy can answer for the API. For this long it
    # is asked again at the usual backoff, then every ``max_interval_s`` until the
    # deadline, when it is ``lost`` (never failed: it may exist and be billed).
    not_found_grace_s: float = 60.0
    # A progress that puts the finish within this many seconds is polled once, at the
    # window's end; a wider one gets a look in between first (see runner.engine.poll_timing).
    finish_window_s: float = 4.0
    # ... and that poll goes at most this long after the window's start (a task still
    # running then answers a progress that pins its finish for one more poll).
    detect_within_s: float = 3.0

    def next_delay(self, seen: Seen, durations: Durations, quiet_polls: int) -> tuple[float, bool]:
        return next_delay(
            seen,
            durations,
            quiet_polls,
            min_s=self.min_interval_s,
            max_s=self.max_interval_s,
            growth=self.growth,
            finish_window_s=self.finish_window_s,
            detect_within_s=self.detect_within_s,
        )
