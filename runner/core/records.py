"""What the ledger holds, as plain records: task statuses, attempt outcomes, one task's
row. Imports nothing of the project's, so that every layer may use it.

A task moves ``pending -> submitting -> queued -> processing -> succeeded`` on a good
night; every other status below says what went otherwise, and who may move it on.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class TaskStatus(StrEnum):
    PENDING = "pending"  # not yet sent
    SUBMITTING = "submitting"  # committed just before the POST; outcome not yet known
    QUEUED = "queued"  # the API took it and holds its task id
    PROCESSING = "processing"  # the API is generating it
    SUCCEEDED = "succeeded"  # generated (and downloaded, unless --no-download)
    FAILED = "failed"  # the API said so (reason kept verbatim), or refused the request
    INVALID = "invalid"  # failed validation, never sent
    UNKNOWN = "unknown"  # sent, no answer: it may exist and be billed; only rerun --unknown
    EXPIRED = "expired"  # succeeded, but its video could not be downloaded in time
    # Its deadline passed while the API still ran it (or polls failed): task id kept,
    # billed either way; `run`/`resume` poll it again, only `rerun --stalled` resubmits.
    STALLED = "stalled"
    # The API gave it a task id, then Task Result never knew that id until its deadline:
    # it may exist, run and be billed (a lagging Task Result), so it is not failed;
    # `run`/`resume` ask again, only `rerun --lost` resubmits.
    LOST = "lost"
    RETIRED = "retired"  # pending, but no longer in the manifest: never sent, never will be


class AttemptOutcome(StrEnum):
    """How one submit attempt ended (the ``attempts`` table)."""

    SENDING = "sending"  # committed before the POST; the answer is not in yet
    CREATED = "created"  # the API answered with a task id: paid
    NOT_CREATED = "not_created"  # provably nothing created (429, 503, no connection)
    REFUSED = "refused"  # the API refused the input (400): nothing created
    UNKNOWN = "unknown"  # sent, no usable answer: it may exist and be billed


# Attempts that reached (or may have reached) the API: what binds a folder to it, and
# what ``--budget`` counts.
MAY_HAVE_PAID = (AttemptOutcome.CREATED, AttemptOutcome.UNKNOWN, AttemptOutcome.SENDING)

IN_FLIGHT = frozenset({TaskStatus.QUEUED, TaskStatus.PROCESSING})
FINAL = frozenset(
    {
        TaskStatus.SUCCEEDED,
        TaskStatus.FAILED,
        TaskStatus.INVALID,
        TaskStatus.UNKNOWN,
        TaskStatus.EXPIRED,
        TaskStatus.RETIRED,
    }
)
# Task ids a later run asks about again: they may still finish at the API.
ASKED_AGAIN = frozenset({TaskStatus.STALLED, TaskStatus.LOST})
# What a run cannot finish by itself: final, or asked about again by a later run.
SETTLED = FINAL | ASKED_AGAIN


@dataclass(frozen=True)
class TaskRecord:
    """One row of the ledger's ``tasks`` table."""

    task_key: str
    position: int
    row_id: str
    source: str
    image: str
    request_json: str
    fingerprint: str
    est_cost_usd: float
    video_name: str
    status: TaskStatus
    task_id: str | None
    attempts: int  # paid attempts: created, or may have been (unknown)
    error: str | None
    video_url: str | None
    video_url_expires_at: float | None
    video_path: str | None
    submitted_at: float | None
    finished_at: float | None
    generation_s: float | None
    updated_at: float
    last_answer_at: float | None  # when the API last answered about it (kept for stalled)
    video_bytes: int | None = None  # the video's size when it was written (None: older ledgers)
    video_s: float | None = None  # the video's duration, read from its mvhd box
    video_problem: str | None = None  # why the video is not whole or not as asked; None: fine
    pictures: str | None = None  # JSON: converted pictures sent instead (runner.manifest.plan)
    parent: str | None = None  # a chain link: the task whose last frame is its first
    chain: str | None = None  # the chain it belongs to (its first link's row id)
    parent_video: str | None = None  # the sha256 of the parent's video it was made from


@dataclass(frozen=True)
class TaskEvent:
    """One change of a task as the ledger records it, told to a run's listeners (the
    failure streak, the canary's gates) in the order it happens."""

    task_key: str
    what: str  # a TaskStatus value; "refused" (at submit), "downloaded", "download_failed"
    reason: str | None = None

    @property
    def finished(self) -> bool:
        """The task is done at the API: it succeeded, failed, or was refused."""
        return self.what in (TaskStatus.SUCCEEDED, TaskStatus.FAILED, REFUSED)

    @property
    def failed(self) -> bool:
        return self.what in (TaskStatus.FAILED, REFUSED)


REFUSED = "refused"  # a TaskEvent: the API refused the request at submit (nothing made)
DOWNLOADED = "downloaded"
DOWNLOAD_FAILED = "download_failed"


class Planned(Protocol):
    """A task as the planner hands it to the ledger (``runner.manifest.plan.PlannedTask``)."""

    @property
    def key(self) -> str: ...
    @property
    def row_id(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def image(self) -> str: ...
    @property
    def fingerprint(self) -> str: ...
    @property
    def legacy_fingerprint(self) -> str | None: ...
    @property
    def parent(self) -> str | None: ...
    @property
    def chain(self) -> str | None: ...
    @property
    def est_cost_usd(self) -> float: ...
    @property
    def video_name(self) -> str: ...
    def request_json(self) -> str: ...
    def pictures_json(self) -> str | None: ...


class Verdict(StrEnum):
    """A person's judgement of a task's video (``kling-batch review``)."""

    KEPT = "kept"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Review:
    """The judgement of a task's latest attempt: a verdict (or none yet), a note, and
    the settings to change when it is made again (``rerun --rejected``)."""

    task_key: str
    attempt: int
    verdict: Verdict | None = None
    note: str = ""
    edits: tuple[tuple[str, object], ...] = ()  # (setting, new value), in the order given
    judged_at: float = 0.0
