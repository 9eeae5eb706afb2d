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
from jobs.contract import Request
from jobs.forms import DESCRIBED
from jobs.images import image_payload, is_url
from runner.api.client import NovitaClient
from runner.api.learned import Learned
from runner.api.wire_forms import WireForms, fields_with_forms
from runner.core.clock import SYSTEM_CLOCK, Clock
from runner.core.errors import (
    ApiError,
    ApiUnreachable,
    BalanceExhausted,
    KlingBatchError,
    RateLimited,
    TransportError,
)
from runner.core.records import TaskRecord
from runner.engine.canary import CanaryMode, Sent
from runner.engine.chain_links import ChainLinks
from runner.engine.rate_limits import EndpointLimiter
from runner.engine.retry import DEFAULT_LIMITS, Action, Decision, RetryLimits, after_submit_error
from runner.engine.stopping import StopSwitch
from runner.engine.streak import FailureStreak
from runner.engine.submit_queue import SubmitQueue
from runner.ledger.transitions import RunState
from runner.media.picture_pool import sent_files

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
        wire: WireForms | None = None,
        canary: CanaryMode = CanaryMode.OFF,
        download: bool = True,
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
        # The form of each field the pages leave open, and the canary's gates.
        self.wire = wire or WireForms(Learned(""))
        self.canary = canary
        self.download = download
        self.queue: SubmitQueue | None = None

    async def run(self, tasks: list[TaskRecord], in_flight: list[TaskRecord] | None = None) -> None:
        """Submit every task (as the ledger had it at the start of the run), behind the
        canary's gates (``runner.engine.canary``). Without a canary the first goes alone all
        the same: a wrong key, base URL or an empty balance then costs one refused
        request, not one per worker. ``in_flight``: tasks the API made before this run
        (a canary among them is waited for, not sent again)."""
        links = ChainLinks(self.state, download=self.download)
        queue = SubmitQueue(
            links.split(tasks),
            self.state,
            self.wire,
            self.canary,
            download=self.download,
            in_flight=in_flight,
            more_coming=links.more_coming,
        )
        self.queue = queue
        self.state.listeners.append(queue.hear)
        self.state.listeners.append(links.hear)
        self.stop.on_trip(queue.close)
        links.start(queue.add, queue.wake)
        try:
            if self.canary == CanaryMode.OFF:
                await self._worker(queue, stop_after=1)
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.workers, len(tasks))):
                    group.create_task(self._worker(queue))
        finally:
            self.state.listeners.remove(queue.hear)
            self.state.listeners.remove(links.hear)
            await links.close()
            for key, why in links.unsent().items():
                log.warning("%s not sent this run: %s", key, why)

    async def _worker(self, queue: SubmitQueue, stop_after: int | None = None) -> None:
        done = 0
        while done != stop_after and (record := await queue.get(self._may_submit)) is not None:
            sent, field = await self.submit_one(record)
            queue.sent(record, sent, field)
            done += 1

    def closed_because(self) -> tuple[str, KlingBatchError] | None:
        """Why submitting closed before the end, when not for a full stop: (what to
        say, the error) for a spent balance or a bad night. The budget leaves tasks
        pending without a stop (``Budget.exhausted``)."""
        if self.out_of_balance is not None:
            return f"the API refused the run: {self.out_of_balance}", self.out_of_balance
        if self.streak.tripped is not None:
            return str(self.streak.tripped), self.streak.tripped
        return None

    def _may_submit(self) -> bool:
        return (
            not self.stop.is_set
            and not self.budget.exhausted
            and self.out_of_balance is None
            and self.streak.tripped is None
        )

    async def submit_one(self, record: TaskRecord) -> tuple[Sent, str | None]:
        """Send one task (again, in the next form, when a refusal names a field whose
        form is open); what became of it, and the field whose forms were all refused."""
        key = record.task_key
        request = request_from_json(record.request_json)
        try:  # read the image now, not at planning: memory stays flat on big batches
            images = self._payloads(record, request)
        except OSError as exc:
            self.state.mark_failed(key, f"image could not be read at submit time: {exc}")
            return Sent.NOT_SENT, None
        used = fields_with_forms(request)
        failures = rate_limited = 0
        while True:
            unsendable = self.wire.unsendable(request.model, used)
            if unsendable is not None:  # learned: nothing would take it; nothing is paid
                self.state.mark_failed(key, unsendable)
                return Sent.NOT_SENT, None
            body = request.body(images, self.wire.forms_for(request.model))
            await self.limiter.acquire()
            if self.stop.is_set or self.out_of_balance is not None or self.streak.tripped:
                return Sent.NOT_SENT, None  # still pending: the next run submits it
            if not self.budget.reserve(record.est_cost_usd):
                log.warning(
                    "%s: left pending: it would take the estimate past the budget of $%.2f",
                    key,
                    self.budget.limit_usd,
                )
                return Sent.NOT_SENT, None
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
                outcome = await self._follow(decision, record, attempt, exc, used)
                if outcome is None:
                    continue
                return outcome
            self._unreachable_since = None
            self.limiter.succeeded()
            holder = self.state.task_id_holder(task_id, key)
            if holder is not None:  # one id is one task: this answer is not this task's
                said = (
                    f"the API answered with task id {task_id}, which task {holder} already "
                    "holds (a gateway replaying an answer?): whether this request made a task "
                    "cannot be known; not resent (rerun --unknown decides)"
                )
                self.state.mark_unknown(key, attempt, said)
                log.error("%s: %s", key, said)
                return Sent.UNKNOWN, None
            self.state.mark_submitted(key, attempt, task_id)
            self.wire.accepted(request.model, used)
            self.created += 1
            log.info("%s: submitted as task %s", key, task_id)
            self.on_submitted(key, task_id)
            return Sent.CREATED, None

    def _payloads(self, record: TaskRecord, request: Request) -> dict[str, str]:
        """Each picture's payload: raw base64 of the file (a converted picture is sent
        instead of its source), or the URL."""
        converted = sent_files(record.pictures)
        return {
            name: self.images.payload(
                str(self.state.path.parent / converted[name]) if name in converted else reference
            )
            for name in request.model.image_fields
            if (reference := request.get(name))
        }

    async def _follow(
        self,
        decision: Decision,
        record: TaskRecord,
        attempt: int,
        exc: KlingBatchError,
        used: list[str],
    ) -> tuple[Sent, str | None] | None:
        """Record what the failed attempt means and act on the decision; None means
        send this task again."""
        key = record.task_key
        if decision.action == Action.UNKNOWN:  # it may have been created: keep the money
            self.state.mark_unknown(key, attempt, str(exc))
            log.warning("%s: outcome unknown, not retried (rerun --unknown decides): %s", key, exc)
            return Sent.UNKNOWN, None
        self.budget.give_back(record.est_cost_usd)  # every other case created nothing
        if decision.action == Action.REFUSED and isinstance(exc, ApiError):
            return self._refused(record, attempt, exc, used)
        self.state.mark_not_created(key, attempt, str(exc))
        if isinstance(exc, BalanceExhausted):
            # Only submitting stops: the tasks already created are paid for, so the
            # poll schedule and the fetcher carry on until they are done.
            if self.out_of_balance is None:
                log.error("out of balance: no more submits this run; in flight go on: %s", exc)
            self.out_of_balance = exc
            return Sent.NOT_SENT, None
        if decision.action == Action.STOP_RUN:
            self.stop.trip(f"the API refused the run: {exc}", exc)
            return Sent.NOT_SENT, None
        if self._unreachable_for_too_long(exc):
            return Sent.NOT_SENT, None
        if decision.action == Action.GIVE_UP:
            log.error("%s: still refused after retrying, left pending: %s", key, exc)
            return Sent.NOT_SENT, None
        if decision.action == Action.PAUSE_ALL and isinstance(exc, RateLimited):
            pause = self.limiter.cool_down(exc.retry_after)
            log.info("%s: rate limited; all submits pause %.1fs", key, pause)
            return None
        log.info("%s: %s; retry in %.1fs", key, exc, decision.delay_s)
        await self.stop.sleep(decision.delay_s)
        return None

    def _refused(
        self, record: TaskRecord, attempt: int, exc: ApiError, used: list[str]
    ) -> tuple[Sent, str | None] | None:
        """A refusal at submit (nothing was created). One that names a field whose
        form is open sends the task again in the field's next form (None); once every
        form was refused, the task is refused with a message that says what to do."""
        key = record.task_key
        model = request_from_json(record.request_json).model
        adapted = self.wire.after_refusal(model, exc, used)
        if adapted is not None and adapted.next is not None:
            self.state.mark_refused_for_form(key, attempt, f"{exc} ({adapted.describe()})")
            log.warning("%s: %s: %s", key, exc, adapted.describe())
            return None
        if adapted is None:
            self.state.mark_submit_refused(key, attempt, str(exc))
            log.warning("%s: refused by the API: %s", key, exc)
            return Sent.REFUSED, None
        field = adapted.field
        said = (
            f"{exc}; {field} was refused in every form kling-batch knows for it "
            f"({', '.join(DESCRIBED[f] for f in model.by_name[field].forms)}): read "
            f"Novita's page for {model.name}, then force the form it gives with "
            f"--wire {field}=FORM, or leave {field} out"
        )
        self.state.mark_submit_refused(key, attempt, said)
        log.error("%s: %s", key, said)
        return Sent.FORMS_REFUSED, field

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
