"""Typed errors. The client decides, in one place, which class an answer belongs to and
whether it may be retried; every other module only reads ``retryable`` and ``stops_run``.

For a submit, *retryable* means the API provably created nothing, so sending the same
request again cannot pay twice. Anything that might have created a task is
:class:`SubmitOutcomeUnknown` and is never retried automatically.
"""

from __future__ import annotations

from collections.abc import Sequence


class KlingBatchError(Exception):
    """Base of every error kling-batch raises on purpose."""

    retryable: bool = False
    stops_run: bool = False
    hint: str = ""  # what the user can do about it, for errors that stop a run


class ApiError(KlingBatchError):
    """The API answered with an error. ``reason`` is its UPPER_SNAKE code, kept verbatim."""

    def __init__(self, status: int, reason: str, message: str, *, retryable: bool = False):
        self.status = status
        self.reason = reason
        self.message = message
        self.retryable = retryable
        super().__init__(f"HTTP {status} {reason}: {message}".strip().rstrip(":"))


class InvalidRequest(ApiError):
    """The API refused this task's input (400): not retried; the task is failed."""


class AuthError(ApiError):
    """Missing, wrong or unauthorised API key (400 MISSING_API_KEY, 401, 403)."""

    stops_run = True
    hint = "check NOVITA_API_KEY, and that the key may use this model"


class BalanceExhausted(ApiError):
    """Out of money (400 BILLING_BALANCE_NOT_ENOUGH): stop, resumable after a top-up."""

    stops_run = True
    hint = "top up the Novita balance"


class EndpointNotFound(ApiError):
    """404 on the submit path: the base URL or model path is wrong; nothing will work."""

    stops_run = True
    hint = "check NOVITA_BASE_URL"


class TaskNotFound(ApiError):
    """404 TASK_NOT_FOUND from task-result: the API does not know this task id."""


class RateLimited(ApiError):
    """429: wait (at least ``retry_after`` seconds when the API says so), then retry."""

    def __init__(self, status: int, reason: str, message: str, retry_after: float | None):
        super().__init__(status, reason, message, retryable=True)
        self.retry_after = retry_after


class ServerError(ApiError):
    """5xx. ``retryable`` is true only where retrying cannot create a second task."""


class TransportError(KlingBatchError):
    """No answer from the API. For a submit this is raised only when the connection was
    never made, so the request cannot have reached the API and a retry is safe."""

    retryable = True


class SubmitOutcomeUnknown(KlingBatchError):
    """A submit was sent but no usable answer came back (timeout, dropped connection,
    504): the task may exist and be billed. Never retried without the user's say-so."""


class Interrupted(KlingBatchError):
    """The user asked the run to stop (Ctrl-C, SIGTERM): not an API problem."""

    stops_run = True
    hint = "nothing is lost"


class UrlExpired(KlingBatchError):
    """A video link answered 403/404/410: expired or revoked; ask Task Result again."""


class VideoDamaged(KlingBatchError):
    """A downloaded video is cut short or damaged (its MP4 boxes do not add up): fetched
    again, never kept as if whole."""


class ManifestError(KlingBatchError):
    """The manifest cannot be read at all (no such file, malformed YAML, no CSV header)."""

    def __init__(self, problems: Sequence[object]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class UsageError(KlingBatchError):
    """The command cannot run as given (no API key, a malformed option value): nothing
    was sent."""


class RunFolderError(KlingBatchError):
    """A run folder cannot be used as asked (held by another run, not a run folder,
    bound to another API, results without a ledger). Raised before anything is sent."""


class FolderLocked(RunFolderError):
    """Another process holds the run folder: two runners on one ledger pay twice."""


class FolderChanged(KlingBatchError):
    """The ledger file (or the lock file) was deleted or replaced while this run held
    it. Stop: a run that goes on without its ledger cannot keep the money rules, a
    later run would not know what was paid for, and without its lock file a second run
    could start beside this one."""

    stops_run = True


class MachineTrouble(KlingBatchError):
    """The machine cannot go on (the disk is full, the run folder cannot be written):
    nothing more is started, what was paid for stays in the ledger, resumable."""

    stops_run = True
    hint = "free some space (or make the run folder writable)"


class BadNight(KlingBatchError):
    """Submitting stopped after a streak of failures; ``resume`` goes on once a person
    has looked (exit 1: tasks failed, nothing is wrong with the machine)."""


class ApiUnreachable(KlingBatchError):
    """Nothing answers at the base URL (connection refused, no route, DNS) for long
    enough that waiting longer would only hold a night's batch: stop, resumable."""

    stops_run = True
    hint = "check NOVITA_BASE_URL and the network"
