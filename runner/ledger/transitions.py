"""A run's state transitions, on its ledger (``runner.ledger.file``).

Rules they exist to keep (design.md, "Money and state"):
1. write before you send: a task is ``submitting``, committed, before its POST;
2. its ``task_id`` is committed the moment the answer arrives;
3. on resume, ``submitting`` becomes ``unknown`` (we cannot know whether the API got
   it), tasks with a ``task_id`` go back to polling, ``pending`` ones are submitted, but
   only those the manifest still asks for.

Submit-side transitions are durable (committed and fsynced before they return); what
polls and downloads learn is deferred (group-committed), see ``runner.ledger.file``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from runner.core.clock import SYSTEM_CLOCK, Clock
from runner.core.records import (
    DOWNLOAD_FAILED,
    DOWNLOADED,
    REFUSED,
    AttemptOutcome,
    Planned,
    TaskEvent,
    TaskStatus,
)
from runner.ledger.reviews import Revising


@dataclass(frozen=True)
class SyncResult:
    """How a manifest's plan met what the ledger already holds."""

    added: int
    kept: int
    updated_pending: int
    retired: int = 0  # pending tasks whose row or repeat left the manifest
    revived: int = 0  # retired tasks the manifest asks for again


class RunState(Revising):
    """The ledger of one run folder, with the transitions a run makes."""

    def __init__(self, path: Path, *, read_only: bool = False, clock: Clock = SYSTEM_CLOCK):
        super().__init__(path, read_only=read_only, clock=clock)
        # Told each change once it is written, in order (runner.core.records.TaskEvent): the
        # engine's failure streak and the canary's gates listen.
        self.listeners: list[Callable[[TaskEvent], None]] = []

    def _tell(self, task_key: str, what: str, reason: str | None = None) -> None:
        event = TaskEvent(task_key, what, reason)
        for listener in list(self.listeners):
            listener(event)

    # --- planning ---------------------------------------------------------------

    def sync_plan(self, planned: Sequence[Planned]) -> SyncResult:
        """Make the ledger ask for exactly what the manifest asks for, before any submit.

        New tasks are recorded as pending, pending ones whose request changed are
        refreshed, and pending ones whose row (or repeat) left the manifest are
        ``retired``: kept in the ledger, never sent (a run must not pay for a row the
        user removed). A retired task the manifest names again is pending again. A key
        already sent whose request changed raises :class:`PlanConflict` and nothing is
        applied: old and new are never silently mixed in one run folder."""
        now = self.clock.time()
        existing = {
            row["task_key"]: (row["fingerprint"], row["status"])
            for row in self._db.execute("SELECT task_key, fingerprint, status FROM tasks")
        }
        unsent = (TaskStatus.PENDING, TaskStatus.RETIRED)
        revised = self.first_fingerprints()  # a redo's edit is not the manifest's change
        added = kept = updated = revived = 0
        changed: list[str] = []
        with self._transaction() as db:
            start = db.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM tasks").fetchone()[0]
            for offset, task in enumerate(planned):
                values = (
                    task.row_id,
                    task.source,
                    task.image,
                    task.request_json(),
                    task.fingerprint,
                    task.est_cost_usd,
                    task.video_name,
                    task.pictures_json(),
                    task.parent,
                    task.chain,
                )
                if task.key not in existing:
                    db.execute(
                        "INSERT INTO tasks (row_id, source, image, request_json, fingerprint, "
                        "est_cost_usd, video_name, pictures, parent, chain, task_key, position, "
                        "status, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (*values, task.key, start + offset, TaskStatus.PENDING, now),
                    )
                    added += 1
                    continue
                fingerprint, status = existing[task.key]
                if status == TaskStatus.RETIRED:
                    self._set(db, task.key, TaskStatus.PENDING, now, error=None)
                    revived += 1
                if fingerprint == task.fingerprint:
                    kept += 1
                elif revised.get(task.key) == task.fingerprint:
                    kept += 1  # the manifest's request, since revised by a redo
                elif status in unsent:
                    db.execute(
                        "UPDATE tasks SET row_id = ?, source = ?, image = ?, request_json = ?, "
                        "fingerprint = ?, est_cost_usd = ?, video_name = ?, pictures = ?, "
                        "parent = ?, chain = ?, updated_at = ? WHERE task_key = ?",
                        (*values, now, task.key),
                    )
                    updated += 1
                elif fingerprint == task.legacy_fingerprint:
                    kept += 1  # sent as it was before conversions: the very same request
                else:
                    changed.append(task.key)
            if changed:  # refuse the whole plan: nothing half-applied
                raise PlanConflict(changed)
            wanted = {task.key for task in planned}
            gone = [
                k for k, (_, s) in existing.items() if s == TaskStatus.PENDING and k not in wanted
            ]
            for key in gone:
                self._set(db, key, TaskStatus.RETIRED, now, error="no longer in the manifest")
        return SyncResult(added, kept, updated, retired=len(gone), revived=revived)

    def settle_cut_off_submits(self) -> int:
        """Apply rule 3: a ``submitting`` task found at start was cut off mid-POST by a
        crash; whether the API created it cannot be known, so it becomes ``unknown``."""
        now = self.clock.time()
        keys = [
            r["task_key"]
            for r in self._db.execute(
                "SELECT task_key FROM tasks WHERE status = ?", (TaskStatus.SUBMITTING,)
            )
        ]
        reason = "interrupted while submitting: the API may have created it"
        for key in keys:
            with self._transaction() as db:
                self._set(db, key, TaskStatus.UNKNOWN, now, error=reason)
                db.execute(
                    "UPDATE attempts SET outcome = ?, error = ? WHERE task_key = ? AND outcome = ?",
                    (AttemptOutcome.UNKNOWN, reason, key, AttemptOutcome.SENDING),
                )
        return len(keys)

    def requeue(self, task_keys: Sequence[str], reason: str) -> int:
        """Make finished tasks pending again, for ``rerun``: the next submit is a new
        attempt. Earlier attempts (and their task ids) stay in ``attempts``; the task's
        own columns are cleared so the report shows the new attempt only."""
        now = self.clock.time()
        with self._transaction() as db:
            for key in task_keys:
                self._set(
                    db,
                    key,
                    TaskStatus.PENDING,
                    now,
                    error=None,
                    task_id=None,
                    video_url=None,
                    video_url_expires_at=None,
                    video_path=None,
                    submitted_at=None,
                    finished_at=None,
                    generation_s=None,
                    last_answer_at=None,
                )
                self._event(db, key, "requeued", reason)
        return len(task_keys)

    def set_link_frame(self, task_key: str, pictures: str, parent_video: str) -> None:
        """A chain link's first frame, made from its parent's video (whose sha256 is
        ``parent_video``): committed before the link is sent."""
        with self._transaction() as db:
            self._update(db, task_key, pictures=pictures, parent_video=parent_video)
            self._event(db, task_key, "first frame", f"the last of a video {parent_video[:12]}")

    # --- transitions (each one committed before it returns) ----------------------

    def mark_submitting(self, task_key: str) -> int:
        """Rule 1, write before you send. Returns the attempt number."""
        now = self.clock.time()
        with self._transaction() as db:
            attempt = db.execute(
                "INSERT INTO attempts (task_key, attempt, outcome, started_at) "
                "SELECT ?, COALESCE(MAX(attempt), 0) + 1, ?, ? FROM attempts "
                "WHERE task_key = ? RETURNING attempt",
                (task_key, AttemptOutcome.SENDING, now, task_key),
            ).fetchone()[0]
            self._set(db, task_key, TaskStatus.SUBMITTING, now, attempts_change=1, error=None)
        return int(attempt)

    def mark_submitted(self, task_key: str, attempt: int, task_id: str) -> None:
        """Rule 2: the task id is committed the moment the answer arrives."""
        now = self.clock.time()
        with self._transaction() as db:
            self._answer_attempt(
                db, task_key, attempt, AttemptOutcome.CREATED, now, task_id=task_id
            )
            self._set(
                db,
                task_key,
                TaskStatus.QUEUED,
                now,
                task_id=task_id,
                submitted_at=now,
                error=None,
                video_url=None,
                video_url_expires_at=None,
                video_path=None,
                finished_at=None,
                generation_s=None,
            )
        self._tell(task_key, TaskStatus.QUEUED, task_id)

    def mark_not_created(self, task_key: str, attempt: int, error: str) -> None:
        """The API provably created nothing (429, explicit error, no connection): the
        task is pending again, and this attempt does not count as a paid one."""
        now = self.clock.time()
        with self._transaction() as db:
            self._answer_attempt(
                db, task_key, attempt, AttemptOutcome.NOT_CREATED, now, error=error
            )
            self._set(db, task_key, TaskStatus.PENDING, now, attempts_change=-1, error=error)

    def mark_submit_refused(self, task_key: str, attempt: int, error: str) -> None:
        """The API refused the input (400): nothing created, nothing to retry."""
        self._close_attempt(task_key, attempt, AttemptOutcome.REFUSED, TaskStatus.FAILED, error)
        self._tell(task_key, REFUSED, error)

    def mark_refused_for_form(self, task_key: str, attempt: int, error: str) -> None:
        """The API refused the request for the form of one of its fields, which the
        next attempt changes (``runner.api.wire_forms``): nothing was created, the task is
        pending again, and the attempt is kept as refused."""
        now = self.clock.time()
        with self._transaction() as db:
            self._answer_attempt(db, task_key, attempt, AttemptOutcome.REFUSED, now, error=error)
            self._set(db, task_key, TaskStatus.PENDING, now, attempts_change=-1, error=error)

    def mark_unknown(self, task_key: str, attempt: int, error: str) -> None:
        self._close_attempt(task_key, attempt, AttemptOutcome.UNKNOWN, TaskStatus.UNKNOWN, error)
        self._tell(task_key, TaskStatus.UNKNOWN, error)

    def _close_attempt(
        self,
        task_key: str,
        attempt: int,
        outcome: AttemptOutcome,
        status: TaskStatus,
        error: str,
    ) -> None:
        now = self.clock.time()
        with self._transaction() as db:
            self._answer_attempt(db, task_key, attempt, outcome, now, error=error)
            self._set(db, task_key, status, now, error=error, finished_at=now)

    def mark_processing(self, task_key: str) -> None:
        with self._deferred() as db:
            self._set(db, task_key, TaskStatus.PROCESSING, self.clock.time())

    def mark_failed(self, task_key: str, error: str, generation_s: float | None = None) -> None:
        now = self.clock.time()
        with self._deferred() as db:
            self._set(
                db,
                task_key,
                TaskStatus.FAILED,
                now,
                error=error,
                finished_at=now,
                generation_s=generation_s,
            )
        self._tell(task_key, TaskStatus.FAILED, error)

    def mark_succeeded(
        self,
        task_key: str,
        video_url: str | None,
        expires_at: float | None,
        generation_s: float | None,
    ) -> None:
        now = self.clock.time()
        with self._deferred() as db:
            self._set(
                db,
                task_key,
                TaskStatus.SUCCEEDED,
                now,
                error=None,
                finished_at=now,
                video_url=video_url,
                video_url_expires_at=expires_at,
                generation_s=generation_s,
            )
        self._tell(task_key, TaskStatus.SUCCEEDED)

    def set_video_url(self, task_key: str, video_url: str, expires_at: float | None) -> None:
        with self._deferred() as db:
            self._update(db, task_key, video_url=video_url, video_url_expires_at=expires_at)

    def mark_downloaded(
        self,
        task_key: str,
        video_path: str,
        size: int,
        video_s: float | None = None,
        video_problem: str | None = None,
    ) -> None:
        """The video is on disk, whole (``video_problem``: kept, but not as asked, e.g. a
        duration that differs). An ``expired`` task whose link was refreshed by a later
        run is ``succeeded`` again: it was, and now its video is here too."""
        with self._deferred() as db:
            self._update(
                db,
                task_key,
                video_path=video_path,
                video_bytes=size,
                video_s=video_s,
                video_problem=video_problem,
                error=None,
                status=TaskStatus.SUCCEEDED,
            )
            self._event(db, task_key, "downloaded", video_path)
        self._tell(task_key, DOWNLOADED)

    def forget_lost_videos(self) -> list[str]:
        """Succeeded tasks whose file was deleted or changed since it was written are
        fetched again: their ``video_path`` is cleared (see ``Ledger.lost_videos``)."""
        lost = self.lost_videos()
        if not lost:
            return lost
        with self._transaction() as db:
            for key in lost:
                self._update(db, key, video_path=None, video_bytes=None)
                self._event(db, key, "video_lost", "the file was deleted or changed")
        return lost

    def note_download_failed(
        self, task_key: str, error: str, video_problem: str | None = None
    ) -> None:
        """The video is still there to fetch; say why we have no file yet (a video that
        kept arriving cut or damaged is named in ``video_problem``)."""
        with self._deferred() as db:
            self._update(db, task_key, error=error, video_problem=video_problem)
            self._event(db, task_key, "download_failed", error)
        self._tell(task_key, DOWNLOAD_FAILED, error)

    def mark_stalled(self, task_key: str, error: str, last_answer_at: float | None) -> None:
        """The deadline passed while the API still ran the task, or while its polls
        failed. Not a failure: the task id is kept, it may still finish, and it is
        billed either way; a later run polls it again."""
        self._ask_again_later(task_key, TaskStatus.STALLED, error, last_answer_at)

    def mark_lost(self, task_key: str, error: str, last_answer_at: float | None) -> None:
        """Task Result never knew the task id the API gave us, up to its deadline. Not a
        failure: the task may exist and be billed; its id is kept, a later run asks
        again, and only ``rerun --lost`` pays for it again."""
        self._ask_again_later(task_key, TaskStatus.LOST, error, last_answer_at)

    def _ask_again_later(
        self, task_key: str, status: TaskStatus, error: str, last_answer_at: float | None
    ) -> None:
        """Deferred like every poll-side write: a crash that loses it leaves the task in
        flight, polled again."""
        with self._deferred() as db:
            self._set(
                db, task_key, status, self.clock.time(), error=error, last_answer_at=last_answer_at
            )
        self._tell(task_key, status, error)

    def mark_expired(self, task_key: str, error: str) -> None:
        with self._deferred() as db:
            self._set(db, task_key, TaskStatus.EXPIRED, self.clock.time(), error=error)
        self._tell(task_key, TaskStatus.EXPIRED, error)


class PlanConflict(Exception):
    """Tasks already sent whose request is different in the manifest now."""

    def __init__(self, keys: list[str]):
        self.keys = keys
        super().__init__(", ".join(keys))
