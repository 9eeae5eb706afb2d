"""What to do after a failed request: one policy, as pure functions.

The client (``runner.api.client``) turns every answer into a typed error whose
``retryable`` says whether sending again is safe; this module decides what follows,
for each of the three loops (submit, poll, download), and how long to wait. Nothing
here sleeps or touches the network, so ``tests/test_retry.py`` pins every case down in
one table. After openai-python's ``_base_client``: Retry-After first (capped), then
exponential backoff with jitter, drawn from a random source the caller passes in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from runner.core.errors import (
    KlingBatchError,
    RateLimited,
    SubmitOutcomeUnknown,
    TaskNotFound,
)

RETRY_AFTER_CAP_S = 300.0  # a Retry-After beyond this is a server's mistake, not a plan
BACKOFF_CAP_S = 60.0


class Action(StrEnum):
    RETRY = "retry"  # send again after ``delay_s``
    PAUSE_ALL = "pause_all"  # a 429: every worker of the endpoint pauses, then retries
    GIVE_UP = "give_up"  # retries spent: leave the task as it is for a later run
    REFUSED = "refused"  # the API refused this request: nothing created, not retried
    UNKNOWN = "unknown"  # a submit may have created a task: never sent again by itself
    STOP_RUN = "stop_run"  # the whole run must stop (key, balance, base URL)
    NOT_FOUND = "not_found"  # Task Result does not know the id (yet): the poll loop's grace


@dataclass(frozen=True)
class Decision:
    action: Action
    delay_s: float = 0.0


@dataclass(frozen=True)
class RetryLimits:
    transient: int = 8  # network errors and 5xx that created nothing, per task
    rate_limited: int = 50  # 429s, per task: "wait", not "broken"
    downloads: int = 4  # failed downloads of one video before the next run tries


DEFAULT_LIMITS = RetryLimits()


def backoff_delay(attempt: int, rng: random.Random, base_s: float = 1.0) -> float:
    """Exponential backoff with full-ish jitter for retry number ``attempt`` (0-based):
    between half and all of ``base_s * 2**attempt``, capped at :data:`BACKOFF_CAP_S`."""
    ceiling = min(BACKOFF_CAP_S, base_s * 2 ** max(0, attempt))
    return rng.uniform(ceiling / 2, ceiling)


def capped_retry_after(seconds: float | None) -> float | None:
    """A server's Retry-After, never negative and never more than the cap."""
    return None if seconds is None else min(RETRY_AFTER_CAP_S, max(0.0, seconds))


def after_submit_error(
    error: KlingBatchError,
    *,
    failures: int,
    rate_limited: int,
    rng: random.Random,
    base_s: float = 1.0,
    limits: RetryLimits = DEFAULT_LIMITS,
) -> Decision:
    """``failures`` and ``rate_limited``: how many of each this task met, this one
    included. Only an error that provably created nothing is retried."""
    if isinstance(error, SubmitOutcomeUnknown):
        return Decision(Action.UNKNOWN)
    if error.stops_run:
        return Decision(Action.STOP_RUN)
    if not error.retryable:
        return Decision(Action.REFUSED)
    if isinstance(error, RateLimited):
        if rate_limited > limits.rate_limited:
            return Decision(Action.GIVE_UP)
        return Decision(Action.PAUSE_ALL)
    if failures > limits.transient:
        return Decision(Action.GIVE_UP)
    return Decision(Action.RETRY, backoff_delay(failures - 1, rng, base_s))


def after_poll_error(
    error: KlingBatchError, *, errors: int, rng: random.Random, base_s: float = 1.0
) -> Decision:
    """Polls are reads: always safe to send again. ``errors``: this task's failed polls
    in a row, this one included (the backoff stops growing after six)."""
    if error.stops_run:
        return Decision(Action.STOP_RUN)
    if isinstance(error, TaskNotFound):
        return Decision(Action.NOT_FOUND, backoff_delay(min(errors, 6), rng, base_s))
    if isinstance(error, RateLimited):
        return Decision(Action.PAUSE_ALL)
    return Decision(Action.RETRY, backoff_delay(min(errors, 6), rng, base_s))


def after_download_error(
    retries: int, *, rng: random.Random, base_s: float = 1.0, limits: RetryLimits = DEFAULT_LIMITS
) -> Decision:
    """A download that failed for another reason than an expired link (network, disk):
    retried a few times, then left for the next run (the task stays succeeded)."""
    if retries >= limits.downloads:
        return Decision(Action.GIVE_UP)
    return Decision(Action.RETRY, backoff_delay(retries + 1, rng, base_s))
