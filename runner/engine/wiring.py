"""Wire the stages (submit -> poll -> fetch) over one ledger, and own shutdown.

The stages close in order: when the submitter has nothing left, the poll schedule is
told no more tasks will come; when it drains, the fetcher is. A stop (an auth or
balance error) makes every stage stop starting work; what is in flight stays in the
ledger, so ``run`` again resumes exactly there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runner.api.client import NovitaClient
from runner.api.learned import Learned
from runner.api.wire_forms import WireForms
from runner.core.clock import SYSTEM_CLOCK, Clock
from runner.core.errors import BadNight, FolderChanged, Interrupted
from runner.core.rates import Rate
from runner.core.records import ASKED_AGAIN, IN_FLIGHT, TaskRecord, TaskStatus
from runner.engine.canary import CanaryMode
from runner.engine.fetch import Fetcher
from runner.engine.poll import PollScheduler
from runner.engine.poll_timing import PollPolicy
from runner.engine.progress import LineProgress, ProgressSink, Snapshot
from runner.engine.rate_limits import EndpointLimiter
from runner.engine.retry import DEFAULT_LIMITS, RetryLimits
from runner.engine.stopping import StopSwitch
from runner.engine.streak import DEFAULT_MAX_FAILURE_STREAK, FailureStreak
from runner.engine.submit import Budget, Submitter
from runner.ledger.file import DEFERRED_MAX_AGE_S
from runner.ledger.transitions import RunState

log = logging.getLogger(__name__)

VIDEOS_DIR = "videos"


@dataclass(frozen=True)
class EngineConfig:
    submit_rate: Rate = field(default_factory=lambda: Rate(20, 60))
    poll_rate: Rate = field(default_factory=lambda: Rate(5, 1))
    submit_workers: int | None = None  # None: enough to keep the submit rate busy
    poll_concurrency: int = 16
    download: bool = True
    download_workers: int = 4
    retry_limits: RetryLimits = DEFAULT_LIMITS  # per task: transient errors, 429s, downloads
    retry_base_s: float = 1.0  # first backoff step after a transient error (then doubles)
    poll_policy: PollPolicy = field(default_factory=PollPolicy)
    progress_every_s: float = 30.0
    budget_usd: float | None = None  # estimated spend of the whole run folder
    # Connection failures (nothing answers at the base URL) for this long stop the run.
    unreachable_after_s: float = 30.0
    max_failure_streak: int = DEFAULT_MAX_FAILURE_STREAK  # 0: never stop for failures
    canary: CanaryMode = CanaryMode.SUCCEEDED  # first contact: one task per model alone
    wire: Mapping[str, str] = field(default_factory=dict)  # --wire: forced forms


@dataclass(frozen=True)
class RunOutcome:
    counts: dict[str, int]
    created: int  # tasks the API created during this run
    polls: int
    downloaded: int
    resumed_unknown: int  # `submitting` rows found at start, now `unknown`
    stopped_by: str | None  # why the run stopped early, if it did
    stop_error: BaseException | None
    elapsed_s: float
    spent_usd: float = 0.0  # estimated spend of the run folder so far, all runs
    budget_reached: bool = False  # submitting stopped at --budget; the rest is pending
    # A gate that held its tasks (a canary's model, a field's): how many, and why.
    held: dict[str, tuple[int, str]] = field(default_factory=dict)
    poll_lateness_s: tuple[float, ...] = ()  # sent minus due, the latest polls

    @property
    def interrupted(self) -> bool:
        """Stopped by Ctrl-C or SIGTERM, not by the API or the machine."""
        return isinstance(self.stop_error, Interrupted)

    @property
    def bad_night(self) -> bool:
        """Submitting stopped after a streak of failures (runner.engine.streak)."""
        return isinstance(self.stop_error, BadNight)


async def run_engine(
    state: RunState,
    client: NovitaClient,
    run_dir: Path,
    config: EngineConfig,
    stop: StopSwitch | None = None,
    progress: ProgressSink | None = None,
    guard: Callable[[], str | None] | None = None,
    clock: Clock = SYSTEM_CLOCK,
    rng: random.Random | None = None,
    learned: Learned | None = None,
) -> RunOutcome:
    """Run every pending, in-flight, stalled and lost task of the ledger to a final
    state (or stalled or lost again), or until ``stop`` trips (the caller may trip it,
    e.g. on Ctrl-C). ``progress`` is shown every few seconds (default: a log line every
    ``config.progress_every_s``). ``guard`` is asked twice a second whether the run
    folder is still this run's (e.g. its lock file); a problem it names stops the run,
    as does the ledger file being deleted or replaced. ``clock`` and ``rng`` (the
    backoff jitter) are shared by every stage; tests pass their own. ``learned``: what
    is known of the API (``runner.api.learned``), told what the run learns."""
    shared = Shared(
        state,
        client,
        stop or StopSwitch(),
        clock,
        rng or random.Random(),
        learned or Learned.open(client.base_url, state, use_cache=False),
    )
    night = Night(shared, config, run_dir)
    resumed_unknown = night.settle_the_last_run()
    pending, in_flight = night.hand_out_the_ledger()
    await night.run(pending, in_flight, progress or LineProgress(config.progress_every_s), guard)
    return night.outcome(resumed_unknown)


@dataclass(frozen=True)
class Shared:
    """What every stage of one run shares: the ledger, the client, the stop switch, the
    clock, the backoff's jitter, and what is known of the API."""

    state: RunState
    client: NovitaClient
    stop: StopSwitch
    clock: Clock
    rng: random.Random
    learned: Learned


class Night:
    """One run of the engine: its stages built from one :class:`Shared` and the
    config, then each step named (after arq's ``Worker.main``)."""

    def __init__(self, shared: Shared, config: EngineConfig, run_dir: Path):
        self.shared, self.config = shared, config
        self.started = shared.clock.monotonic()
        state, client, stop, clock, rng = (
            shared.state,
            shared.client,
            shared.stop,
            shared.clock,
            shared.rng,
        )
        self.budget = Budget(config.budget_usd, spent_usd=state.committed_spend())
        poll_limiter = EndpointLimiter(config.poll_rate, "poll", rng, clock)
        self.fetcher = Fetcher(
            state,
            client,
            poll_limiter,
            stop,
            run_dir / VIDEOS_DIR,
            workers=config.download_workers,
            limits=config.retry_limits,
            retry_base_s=config.retry_base_s,
            clock=clock,
            rng=rng,
            learned=shared.learned,
        )
        self.scheduler = PollScheduler(
            state,
            client,
            poll_limiter,
            stop,
            config.poll_policy,
            self.fetcher.add if config.download else (lambda key, expires_at: None),
            concurrency=config.poll_concurrency,
            clock=clock,
            rng=rng,
        )
        self.submitter = Submitter(
            state,
            client,
            EndpointLimiter(config.submit_rate, "submit", rng, clock),
            stop,
            lambda key, task_id: self.scheduler.add(key, task_id, submitted_at=clock.time()),
            workers=config.submit_workers or submit_workers_for(config.submit_rate),
            limits=config.retry_limits,
            clock=clock,
            rng=rng,
            retry_base_s=config.retry_base_s,
            budget=self.budget,
            unreachable_after_s=config.unreachable_after_s,
            streak=FailureStreak(config.max_failure_streak),
            wire=WireForms(shared.learned, config.wire),
            canary=config.canary,
            download=config.download,
        )

    def settle_the_last_run(self) -> int:
        """What a crash left: submits cut off mid-POST become ``unknown`` (returns how
        many), videos deleted or changed since are fetched again."""
        state = self.shared.state
        resumed_unknown = state.settle_cut_off_submits()
        if resumed_unknown:
            log.warning(
                "%d task(s) were cut off mid-submit by an earlier crash: now 'unknown'",
                resumed_unknown,
            )
        lost = state.forget_lost_videos() if self.config.download else []
        if lost:
            log.warning(
                "%d video(s) were deleted or changed since they were written: fetching again",
                len(lost),
            )
        return resumed_unknown

    def hand_out_the_ledger(self) -> tuple[list[TaskRecord], list[TaskRecord]]:
        """Each task to its stage: (the pending ones to submit, the ones in flight)."""
        records = self.shared.state.tasks()
        fetcher = self.fetcher if self.config.download else None
        pending = _load(records, self.scheduler, fetcher, self.shared.clock.time())
        in_flight = [r for r in records if r.status in IN_FLIGHT and r.task_id]
        log.info(
            "run: %d to submit, %d in flight, submit rate %s, poll rate %s",
            len(pending),
            self.scheduler.in_flight,
            self.config.submit_rate,
            self.config.poll_rate,
        )
        return pending, in_flight

    async def run(
        self,
        pending: list[TaskRecord],
        in_flight: list[TaskRecord],
        sink: ProgressSink,
        guard: Callable[[], str | None] | None,
    ) -> None:
        """The three stages until each drains, closing in order (submit, then poll, then
        fetch), with the progress shown and the folder watched meanwhile."""
        state = self.shared.state
        state.listeners.append(self.submitter.streak.hear)
        sink.start()
        background = [
            asyncio.create_task(_show_progress(sink, self.snapshot)),
            asyncio.create_task(_watch_folder(state, self.shared.stop, guard)),
        ]
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._submit_then_close(pending, in_flight))
                group.create_task(self._poll_then_close())
                group.create_task(self.fetcher.run())
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            state.listeners.remove(self.submitter.streak.hear)
            state.flush()
            sink.stop(self.snapshot())

    async def _submit_then_close(
        self, pending: list[TaskRecord], in_flight: list[TaskRecord]
    ) -> None:
        try:
            await self.submitter.run(pending, in_flight)
        finally:
            self.scheduler.close()

    async def _poll_then_close(self) -> None:
        try:
            await self.scheduler.run()
        finally:
            self.fetcher.close()

    def snapshot(self) -> Snapshot:
        return Snapshot(
            counts=self.shared.state.counts(),
            in_flight=self.scheduler.in_flight,
            created=self.submitter.created,
            polls=self.scheduler.polls,
            spent_usd=self.budget.spent_usd,
            elapsed_s=self.shared.clock.monotonic() - self.started,
            submit_rate_per_s=self.config.submit_rate.per_second,
            recent_task_s=tuple(self.scheduler.finished_after_s),
        )

    def outcome(self, resumed_unknown: int) -> RunOutcome:
        """What the run did, and why it stopped early if it did: a full stop first, else
        why submitting closed (the submitter holds "closed, because")."""
        stop = self.shared.stop
        stopped_by, stop_error = stop.reason, stop.error
        closed = self.submitter.closed_because()
        if stopped_by is None and closed is not None:
            stopped_by, stop_error = closed
        if stopped_by:
            log.error("stopped: %s", stopped_by)
        return RunOutcome(
            counts=self.shared.state.counts(),
            created=self.submitter.created,
            polls=self.scheduler.polls,
            downloaded=self.fetcher.downloaded,
            resumed_unknown=resumed_unknown,
            stopped_by=stopped_by,
            stop_error=stop_error,
            elapsed_s=self.shared.clock.monotonic() - self.started,
            spent_usd=self.budget.spent_usd,
            budget_reached=self.budget.exhausted,
            held=self.submitter.queue.held if self.submitter.queue else {},
            poll_lateness_s=tuple(self.scheduler.lateness_s),
        )


def submit_workers_for(rate: Rate, latency_s: float = 0.25) -> int:
    """Workers needed so that the limiter, not the round trip, sets the pace: a submit
    carries megabytes of base64 and takes a while, and at 100/s four workers would
    each need an answer every 40 ms. Between 4 and 64."""
    return max(4, min(64, math.ceil(rate.per_second * latency_s)))


def _load(
    records: list[TaskRecord], scheduler: PollScheduler, fetcher: Fetcher | None, now: float
) -> list[TaskRecord]:
    """Hand each task to its stage; returns the pending ones. Stalled and lost tasks are
    polled first, each with a fresh deadline: they may have finished since the last run
    (or Task Result may know them by now)."""
    for record in sorted(records, key=lambda r: r.status not in ASKED_AGAIN):
        asked_again = record.status in ASKED_AGAIN
        if (asked_again or record.status in IN_FLIGHT) and record.task_id:
            scheduler.add(
                record.task_key,
                record.task_id,
                record.submitted_at or now,
                status=record.status,
                delay=0,
                deadline_from=now if asked_again else None,
                last_answer_at=record.last_answer_at,
            )
        elif fetcher and _video_to_fetch(record):
            fetcher.add(record.task_key, record.video_url_expires_at)
    return [r for r in records if r.status == TaskStatus.PENDING]


def _video_to_fetch(record: TaskRecord) -> bool:
    """A succeeded task without its file, or an expired one the API may still keep:
    asking Task Result for a fresh link is free, and a rerun would pay again."""
    if record.status == TaskStatus.SUCCEEDED:
        return not record.video_path
    return record.status == TaskStatus.EXPIRED and bool(record.task_id)


async def _watch_folder(
    state: RunState, stop: StopSwitch, guard: Callable[[], str | None] | None
) -> None:
    """Twice a second: commit group-committed (poll-side) writes even when nothing else
    is written, and stop the run if its ledger file (or, through ``guard``, its lock)
    is no longer the one it holds."""
    while True:
        await asyncio.sleep(DEFERRED_MAX_AGE_S)
        state.flush()
        problem = state.file_problem() or (guard() if guard else None)
        if problem:
            stop.trip(problem, FolderChanged(problem))
            return


async def _show_progress(sink: ProgressSink, snapshot: Callable[[], Snapshot]) -> None:
    while True:
        await asyncio.sleep(sink.interval_s)
        sink.update(snapshot())
