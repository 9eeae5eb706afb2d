"""Poll every task in flight from one schedule, within the poll rate limit.

Polls are a budget: Task Result is rate limited like any endpoint, and a batch can have
thousands of tasks in flight. So there is one schedule (not a coroutine sleeping per
task), in three queues, each ordered by when its polls are due:

1. polls timed to find a task done (its ``eta``, or a progress precise enough): a late
   one is a late detection, so they go first;
2. looks that narrow a rough progress, or back off while a task says nothing;
3. first looks at new tasks. These are due when the quickest tenth of the batch is
   done, but may go early, into any slot the other two leave free, once a task is
   ``first_poll_s`` old: when submits use the whole poll rate, first looks due later
   would meet the first finishes head on and arrive after some of them.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from runner.api.answers import (
    FAILED,
    KNOWN_RUNNING,
    PROCESSING,
    SUCCEED,
    TaskResult,
    ended_without_video,
)
from runner.api.client import NovitaClient
from runner.api.links import link_expiry
from runner.core.clock import SYSTEM_CLOCK, Clock
from runner.core.errors import KlingBatchError, RateLimited, TaskNotFound
from runner.core.records import ASKED_AGAIN, TaskStatus
from runner.engine.poll_timing import Durations, PollPolicy, Seen
from runner.engine.rate_limits import EndpointLimiter
from runner.engine.retry import Action, Decision, after_poll_error
from runner.engine.stopping import StopSwitch
from runner.ledger.transitions import RunState

log = logging.getLogger(__name__)


_Entry = tuple[float, int, str, float]  # due (monotonic), tie-break, task key, may go from


@dataclass
class _Tracked:
    task_id: str
    submitted_at: float  # wall clock, from the ledger
    # Monotonic: when its deadline passes. Counted from the submit's wall time when the
    # task is handed over (so a restart does not extend it), then on the monotonic
    # clock, so that a wall clock stepped forward (NTP after a sleep) stalls nothing.
    deadline_at: float
    last_answer_at: float | None = None  # wall clock of the API's last answer about it
    quiet_polls: int = 0
    errors: int = 0
    not_found_since: float | None = None  # monotonic: the first 404 in a row
    status: TaskStatus = TaskStatus.QUEUED


class PollScheduler:
    def __init__(
        self,
        state: RunState,
        client: NovitaClient,
        limiter: EndpointLimiter,
        stop: StopSwitch,
        policy: PollPolicy,
        on_succeeded: Callable[[str, float | None], None],
        *,
        concurrency: int = 16,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
    ):
        self.state = state
        self.client = client
        self.limiter = limiter
        self.stop = stop
        self.policy = policy
        self.on_succeeded = on_succeeded
        self.concurrency = concurrency
        self.clock = clock
        self.rng = rng or random.Random()
        self.polls = 0
        self._likely_done: list[_Entry] = []  # polls timed to find the task done
        self._heap: list[_Entry] = []  # looks that gather information
        self._first: list[_Entry] = []  # first looks at new tasks (may go early)
        self._seq = itertools.count()
        self._tracked: dict[str, _Tracked] = {}
        # Submit-to-final seconds of the latest tasks: what the progress ETA uses.
        self.finished_after_s: deque[float] = deque(maxlen=200)
        # What tasks took as the API reports it: what the schedule learns from.
        self.durations = Durations()
        # How late the latest polls went out (sent minus due), for the benchmark: a
        # loop blocked by disk work, or a poll budget spent badly, shows here first.
        self.lateness_s: deque[float] = deque(maxlen=20_000)
        self._wakeup = asyncio.Event()
        self._closed = False
        self._active = 0
        stop.on_trip(self._wakeup.set)

    @property
    def in_flight(self) -> int:
        return len(self._tracked)

    def add(
        self,
        task_key: str,
        task_id: str,
        submitted_at: float,
        status: TaskStatus = TaskStatus.QUEUED,
        delay: float | None = None,
        deadline_from: float | None = None,
        last_answer_at: float | None = None,
    ) -> None:
        """Track a task. ``deadline_from`` defaults to the submit; a stalled or lost task
        found at start gets a fresh deadline from now, one more chance per run."""
        started = submitted_at if deadline_from is None else deadline_from
        gone_by = max(0.0, self.clock.time() - started)
        self._tracked[task_key] = _Tracked(
            task_id,
            submitted_at,
            deadline_at=self.clock.monotonic() + self.policy.task_timeout_s - gone_by,
            last_answer_at=last_answer_at,
            status=TaskStatus.QUEUED if status in ASKED_AGAIN else status,
        )
        if delay is not None:
            self._schedule(task_key, delay)
            return
        now = self.clock.monotonic()
        due = now + self.first_delay()
        early = min(due, now + self.policy.first_poll_s)
        heapq.heappush(self._first, (due, next(self._seq), task_key, early))
        self._wakeup.set()

    def first_delay(self) -> float:
        """When to look at a new task for the first time.

        At first ``first_poll_s``; once the API has reported enough tasks finished, the
        time by which the quickest tenth of them were done (submit to complete, by the
        API's clock). A first look then finds most tasks running, with an ``eta`` or a
        progress to schedule the next one by, and delays only the quickest few."""
        quick = self.durations.quickest_tenth()
        if quick is None:
            return self.policy.first_poll_s
        return min(self.policy.max_interval_s, max(self.policy.min_interval_s, quick))

    def close(self) -> None:
        """No more tasks will be added: :meth:`run` returns once the heap drains."""
        self._closed = True
        self._wakeup.set()

    def _schedule(self, task_key: str, delay: float, likely_done: bool = False) -> None:
        """Queue a poll. One ``likely_done`` (its time comes from an eta or from the
        task's progress) goes before looks that only gather information, whenever both
        are due: with the poll rate as the limit, the budget goes first to the tasks most
        likely to have just finished."""
        heap = self._likely_done if likely_done else self._heap
        due = self.clock.monotonic() + delay
        heapq.heappush(heap, (due, next(self._seq), task_key, due))
        self._wakeup.set()

    def _due(self) -> list[_Entry] | float | None:
        """The queue to poll from now, else seconds until one may go (None: all empty).
        A queue's head may go once due; a first look also from its ``may go from``."""
        now = self.clock.monotonic()
        for queue in (self._likely_done, self._heap):
            if queue and queue[0][0] <= now:
                return queue
        if self._first and self._first[0][3] <= now:
            return self._first
        starts = [q[0][0] for q in (self._likely_done, self._heap) if q]
        starts += [self._first[0][3]] if self._first else []
        return min(starts) - now if starts else None

    async def run(self) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        async with asyncio.TaskGroup() as group:
            while not self.stop.is_set:
                due = self._due()
                if due is None:
                    if self._closed and self._active == 0:
                        return
                    await self._sleep(None)
                    continue
                if isinstance(due, float):
                    await self._sleep(due)
                    continue
                await slots.acquire()
                await self.limiter.acquire()
                if self.stop.is_set:
                    slots.release()
                    return
                # Time passed waiting for a slot: a likelier poll may have come due.
                queue = self._due()
                when, _, key, _ = heapq.heappop(queue if isinstance(queue, list) else due)
                # Sent minus due: below zero for a first look that went early.
                self.lateness_s.append(self.clock.monotonic() - when)
                self._active += 1
                group.create_task(self._poll(key, slots))

    async def _sleep(self, seconds: float | None) -> None:
        """Until the next poll is due or something changes (a timer, not ``wait_for``:
        this runs thousands of times and ``wait_for`` costs a task each time)."""
        self._wakeup.clear()
        timer = (
            None
            if seconds is None
            else asyncio.get_running_loop().call_later(seconds, self._wakeup.set)
        )
        try:
            await self._wakeup.wait()
        finally:
            if timer is not None:
                timer.cancel()

    async def _poll(self, key: str, slots: asyncio.Semaphore) -> None:
        tracked = self._tracked[key]
        try:
            self.polls += 1
            result = await self.client.task_result(tracked.task_id)
        except KlingBatchError as exc:
            tracked.errors += 1
            decision = after_poll_error(
                exc, errors=tracked.errors, rng=self.rng, base_s=self.policy.min_interval_s
            )
            self._follow(key, tracked, decision, exc)
        else:
            self.limiter.succeeded()
            tracked.errors = 0
            tracked.not_found_since = None
            tracked.last_answer_at = self.clock.time()
            self._handle(key, tracked, result)
        finally:
            self._active -= 1
            slots.release()
            self._wakeup.set()

    def _follow(
        self, key: str, tracked: _Tracked, decision: Decision, exc: KlingBatchError
    ) -> None:
        """Act on what a failed poll means (``runner.engine.retry`` decides)."""
        if decision.action == Action.STOP_RUN:
            self.stop.trip(f"the API refused the run: {exc}", exc)
        elif decision.action == Action.NOT_FOUND and isinstance(exc, TaskNotFound):
            self._not_found(key, tracked, exc, decision.delay_s)
        elif decision.action == Action.PAUSE_ALL and isinstance(exc, RateLimited):
            self.limiter.cool_down(exc.retry_after)
            if not self._past_deadline(key, tracked, "polls rate limited"):
                self._schedule(key, 0)
        else:
            self._retry_later(key, tracked, f"polls failing: {exc}", decision.delay_s)

    def _retry_later(self, key: str, tracked: _Tracked, what: str, delay_s: float) -> None:
        """A poll that told us nothing: look again later, unless the deadline has passed."""
        if self._past_deadline(key, tracked, what):
            return
        log.info("%s: %s; again in %.1fs", key, what, delay_s)
        self._schedule(key, delay_s)

    def _not_found(self, key: str, tracked: _Tracked, exc: TaskNotFound, delay_s: float) -> None:
        """A task id the API gave us that Task Result does not know proves nothing: a new
        task can lag behind in Task Result for minutes, and meanwhile it exists, runs and
        is billed. So it is asked again (at the backoff for ``not_found_grace_s``, then
        every ``max_interval_s``) until its deadline, and then it is ``lost``: never
        failed, so no default rerun pays for it again; ``resume`` asks once more."""
        now = self.clock.monotonic()
        if tracked.not_found_since is None:
            tracked.not_found_since = now
        unknown_for = now - tracked.not_found_since
        if self._deadline_passed(tracked):
            self._finish(key)
            self.state.mark_lost(
                key,
                f"lost: {exc.reason}: Task Result did not know task {tracked.task_id} for "
                f"{unknown_for:.0f}s, up to the {self.policy.task_timeout_s:g}s deadline; it "
                "may exist and be billed: `resume` asks again, `rerun --lost` pays again",
                tracked.last_answer_at,
            )
            log.warning("%s: lost: Task Result never knew task %s", key, tracked.task_id)
            return
        if unknown_for >= self.policy.not_found_grace_s:
            delay_s = max(delay_s, self.policy.max_interval_s)  # slower: it may take minutes
        log.info(
            "%s: Task Result does not know task %s yet (%s, for %.0fs); again in %.1fs",
            key,
            tracked.task_id,
            exc.reason,
            unknown_for,
            delay_s,
        )
        self._schedule(key, delay_s)

    def _handle(self, key: str, tracked: _Tracked, result: TaskResult) -> None:
        if result.generation_s is not None and result.status in (SUCCEED, FAILED):
            self.durations.add(result.generation_s)
        if result.status == SUCCEED:
            self._finish(key)
            link = link_expiry(result.video_url, result.video_url_ttl_s, self.clock.time())
            self.state.mark_succeeded(key, result.video_url, link.at, result.generation_s)
            log.info("%s: succeeded", key)
            self.on_succeeded(key, link.at)
            return
        if ended_without_video(result.status):
            self._finish(key)
            reason = result.reason or "failed (the API gave no reason)"
            if result.status != FAILED:
                reason = f"{result.status}: {reason}"
            self.state.mark_failed(key, reason, result.generation_s)
            log.warning("%s: failed: %s", key, reason)
            return
        if result.status not in KNOWN_RUNNING:
            log.warning("%s: unknown status %r, treated as still running", key, result.status)
        if self._past_deadline(key, tracked, f"still {result.status}"):
            return
        if result.status == PROCESSING and tracked.status == TaskStatus.QUEUED:
            tracked.status = TaskStatus.PROCESSING
            self.state.mark_processing(key)
        tracked.quiet_polls = (
            0 if result.eta_s or result.progress_percent else (tracked.quiet_polls + 1)
        )
        seen = Seen(
            age_s=self.clock.time() - tracked.submitted_at,
            eta_s=result.eta_s,
            progress_percent=result.progress_percent,
            queued_s=result.queued_s,
        )
        delay, likely_done = self.policy.next_delay(seen, self.durations, tracked.quiet_polls)
        self._schedule(key, delay, likely_done)

    def _past_deadline(self, key: str, tracked: _Tracked, last_seen: str) -> bool:
        """Past its deadline, a task is ``stalled``, not failed: it keeps its task id, may
        still finish and is billed either way, so only an explicit choice pays again."""
        if not self._deadline_passed(tracked):
            return False
        age = self.clock.time() - tracked.submitted_at
        self._finish(key)
        if tracked.last_answer_at is not None:
            answered = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(tracked.last_answer_at))
            last = f"last answer from the API at {answered}"
        else:
            last = "no answer from the API since the submit"
        self.state.mark_stalled(
            key,
            f"stalled: past the {self.policy.task_timeout_s:g}s deadline ({last_seen}); {last}; "
            f"task id {tracked.task_id} kept: `resume` polls it again",
            tracked.last_answer_at,
        )
        log.warning("%s: stalled after %.0fs (%s)", key, age, last_seen)
        return True

    def _deadline_passed(self, tracked: _Tracked) -> bool:
        return self.clock.monotonic() > tracked.deadline_at

    def _finish(self, key: str) -> None:
        tracked = self._tracked.pop(key, None)
        if tracked is not None:
            self.finished_after_s.append(self.clock.time() - tracked.submitted_at)
