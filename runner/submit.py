"""Submit pending tasks: a few workers, one shared rate limit, and the money rules.

Each submit is: take a slot from the submit limiter, commit ``submitting``, POST,
commit the task id. A retry happens only for errors the client marked ``retryable``
(nothing was created); :class:`SubmitOutcomeUnknown` ends the task as ``unknown``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Callable
from dataclasses import dataclass

from jobs import request_from_json
from jobs.images import image_payload, is_url
from runner.client import NovitaClient
from runner.clock import SYSTEM_CLOCK, Clock
from runner.errors import (
    ApiUnreachable,
    BalanceExhausted,
    KlingBatchError,
    RateLimited,
    TransportError,
)
from runner.limits import EndpointLimiter
from runner.picture_pool import sent_files
from runner.records import TaskRecord
from runner.retry import DEFAULT_LIMITS, Action, Decision, RetryLimits, after_submit_error
from runner.state import RunState
from runner.stopping import StopSwitch
from runner.streak import FailureStreak

log = logging.getLogger(__name__)


@dataclass
class Budget:
    """``--budget``: the estimated spend of the run folder may not pass ``limit_usd``.

    ``spent_usd`` starts from the ledger (earlier runs count too) and grows by a task's
    estimate *before* its POST, so concurrent workers cannot overshoot together; an
    attempt that provably created nothing gives its share back."""

    limit_usd: float | None
    spent_usd: float = 0.0
    exhausted: bool = False

    def reserve(self, cost_usd: float) -> bool:
        if self.limit_usd is not None and self.spent_usd + cost_usd > self.limit_usd + 1e-9:
            self.exhausted = True
            return False
        self.spent_usd += cost_usd
        return True

    def give_back(self, cost_usd: float) -> None:
        self.spent_usd -= cost_usd


class ImageCache:
    """An image as sent, read at submit time (memory stays flat on big batches). The
    last one is kept: list values and ``repeat`` send one image several times in a row,
    and encoding a 10 MB frame costs milliseconds each time. Keyed by path, size and
    mtime, so an image replaced mid-run is read again. ``read`` turns a reference into
    what is sent (a test may count its calls)."""

    def __init__(self, read: Callable[[str], str] = image_payload):
        self.read = read
        self._last: tuple[tuple[str, int, int], str] | None = None

    def payload(self, reference: str) -> str:
        if is_url(reference):
            return self.read(reference)
        stat = os.stat(reference)
        key = (reference, stat.st_size, stat.st_mtime_ns)
        if self._last is None or self._last[0] != key:
            self._last = (key, self.read(reference))
        return self._last[1]


class Submitter:
    def __init__(
        self,
        state: RunState,
        client: NovitaClient,
        limiter: EndpointLimiter,
        stop: StopSwitch,
        on_submitted: Callable[[str, str], None],
        *,
        workers: int = 4,
        limits: RetryLimits = DEFAULT_LIMITS,
        retry_base_s: float = 1.0,
        budget: Budget | None = None,
        unreachable_after_s: float = 30.0,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        streak: FailureStreak | None = None,
    ):
        self.state = state
        self.client = client
        self.limiter = limiter
        self.stop = stop
        self.on_submitted = on_submitted
        self.workers = workers
        self.limits = limits
        self.clock = clock
        self.rng = rng or random.Random()
        self.retry_base_s = retry_base_s
        self.budget = budget or Budget(None)
        self.unreachable_after_s = unreachable_after_s
        self.created = 0
        # The API said the balance is spent: submitting stops, but polling and fetching
        # go on, since every task already created is paid for (see ``_follow``).
        self.out_of_balance: BalanceExhausted | None = None
        self._unreachable_since: float | None = None  # first connection failure in a row
        self.images = ImageCache()
        # The last tasks to finish all failed: submitting stops (in flight go on).
        self.streak = streak or FailureStreak(0)

    async def run(self, tasks: list[TaskRecord]) -> None:
        """Submit every task (as the ledger had it at the start of the run). The first
        goes alone: a wrong key, base URL or an empty balance then costs one refused
        request, not one per worker."""
        queue: asyncio.Queue[TaskRecord] = asyncio.Queue()
        for task in tasks:
            queue.put_nowait(task)
        await self._worker(queue, stop_after=1)
        async with asyncio.TaskGroup() as group:
            for _ in range(min(self.workers, queue.qsize())):
                group.create_task(self._worker(queue))

    async def _worker(
        self, queue: asyncio.Queue[TaskRecord], stop_after: int | None = None
    ) -> None:
        done = 0
        while self._may_submit() and done != stop_after:
            try:
                record = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await self.submit_one(record)
            done += 1

    def _may_submit(self) -> bool:
        return (
            not self.stop.is_set
            and not self.budget.exhausted
            and self.out_of_balance is None
            and self.streak.tripped is None
        )

    async def submit_one(self, record: TaskRecord) -> None:
        key = record.task_key
        request = request_from_json(record.request_json)
        converted = sent_files(record.pictures)  # a converted picture is sent instead
        try:  # read the image now, not at planning: memory stays flat on big batches
            images = {
                name: self.images.payload(
                    str(self.state.path.parent / converted[name])
                    if name in converted
                    else reference
                )
                for name in request.model.image_fields
                if (reference := request.get(name))
            }
            body = request.body(images)
        except OSError as exc:
            self.state.mark_failed(key, f"image could not be read at submit time: {exc}")
            return
        failures = rate_limited = 0
        while True:
            await self.limiter.acquire()
            if self.stop.is_set or self.out_of_balance is not None or self.streak.tripped:
                return  # still pending: the next run submits it
            if not self.budget.reserve(record.est_cost_usd):
                log.warning(
                    "%s: left pending: it would take the estimate past the budget of $%.2f",
                    key,
                    self.budget.limit_usd,
                )
                return
            attempt = self.state.mark_submitting(key)
            try:
                task_id = await self.client.submit(request.model.path, body)
            except asyncio.CancelledError:
                # A second Ctrl-C: the POST was sent and its answer abandoned.
                self.state.mark_unknown(key, attempt, "interrupted while the submit was in flight")
                raise
            except KlingBatchError as exc:
                if isinstance(exc, RateLimited):
                    rate_limited += 1
                else:
                    failures += 1
                decision = after_submit_error(
                    exc,
                    failures=failures,
                    rate_limited=rate_limited,
                    rng=self.rng,
                    base_s=self.retry_base_s,
                    limits=self.limits,
                )
                if await self._follow(decision, record, attempt, exc):
                    continue
                return
            self._unreachable_since = None
            self.limiter.succeeded()
            self.state.mark_submitted(key, attempt, task_id)
            self.created += 1
            log.info("%s: submitted as task %s", key, task_id)
            self.on_submitted(key, task_id)
            return

    async def _follow(
        self, decision: Decision, record: TaskRecord, attempt: int, exc: KlingBatchError
    ) -> bool:
        """Record what the failed attempt means and act on the decision; True means send
        this task again."""
        key = record.task_key
        if decision.action == Action.UNKNOWN:  # it may have been created: keep the money
            self.state.mark_unknown(key, attempt, str(exc))
            log.warning("%s: outcome unknown, not retried (rerun --unknown decides): %s", key, exc)
            return False
        self.budget.give_back(record.est_cost_usd)  # every other case created nothing
        if decision.action == Action.REFUSED:
            self.state.mark_submit_refused(key, attempt, str(exc))
            log.warning("%s: refused by the API: %s", key, exc)
            return False
        self.state.mark_not_created(key, attempt, str(exc))
        if isinstance(exc, BalanceExhausted):
            # Only submitting stops: the tasks already created are paid for, so the
            # poll schedule and the fetcher carry on until they are done.
            if self.out_of_balance is None:
                log.error("out of balance: no more submits this run; in flight go on: %s", exc)
            self.out_of_balance = exc
            return False
        if decision.action == Action.STOP_RUN:
            self.stop.trip(f"the API refused the run: {exc}", exc)
            return False
        if self._unreachable_for_too_long(exc):
            return False
        if decision.action == Action.GIVE_UP:
            log.error("%s: still refused after retrying, left pending: %s", key, exc)
            return False
        if decision.action == Action.PAUSE_ALL and isinstance(exc, RateLimited):
            pause = self.limiter.cool_down(exc.retry_after)
            log.info("%s: rate limited; all submits pause %.1fs", key, pause)
            return True
        log.info("%s: %s; retry in %.1fs", key, exc, decision.delay_s)
        await self.stop.sleep(decision.delay_s)
        return True

    def _unreachable_for_too_long(self, exc: KlingBatchError) -> bool:
        """Connection failures (nothing answers at the base URL) are retried, but not
        all night: after ``unreachable_after_s`` of nothing else, the run stops (exit 3)
        and ``resume`` continues once the API answers again."""
        if not isinstance(exc, TransportError):
            self._unreachable_since = None  # the API answered, if only with an error
            return False
        now = self.clock.monotonic()
        if self._unreachable_since is None:
            self._unreachable_since = now
        if now - self._unreachable_since < self.unreachable_after_s:
            return False
        self.stop.trip(
            f"nothing answers at {self.client.base_url} "
            f"(for {now - self._unreachable_since:.0f}s: {exc})",
            ApiUnreachable(str(exc)),
        )
        return True
