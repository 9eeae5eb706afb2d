"""The run's ledger: one SQLite file that makes a crash, a reboot or Ctrl-C lose nothing.

Rules it exists to keep (design.md, "Money and state"):
1. write before you send: a task is ``submitting``, committed, before its POST;
2. its ``task_id`` is committed the moment the answer arrives;
3. on resume, ``submitting`` becomes ``unknown`` (we cannot know whether the API got
   it), tasks with a ``task_id`` go back to polling, ``pending`` ones are submitted.

Every submit-side transition is one short transaction of its own, committed before
the call returns. WAL with ``synchronous=FULL`` makes each commit durable across power
loss, not just a process crash: a lost ``submitting`` row is exactly how a tool pays
twice. What polls and downloads learn is group-committed instead: it waits for the next
durable commit (which carries it in the same fsync) or at most ``DEFERRED_MAX_AGE_S``.
Losing it to a crash costs a poll or a download again, never money.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

from runner.errors import RunFolderError
from runner.records import (
    MAY_HAVE_PAID,
    AttemptOutcome,
    Planned,
    TaskRecord,
    TaskStatus,
)

STATE_FILE = "state.sqlite"
SCHEMA_VERSION = 2  # PRAGMA user_version; see _migrate
# Deferred (poll-side) writes are committed at least this often: at most this much
# can be lost to a crash, and all of it is learned again by polling.
DEFERRED_MAX_WRITES = 200
DEFERRED_MAX_AGE_S = 0.5


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
    task_key TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    row_id TEXT NOT NULL,
    source TEXT NOT NULL,
    image TEXT NOT NULL,
    request_json TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    est_cost_usd REAL NOT NULL,
    video_name TEXT NOT NULL,
    status TEXT NOT NULL,
    task_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    video_url TEXT,
    video_url_expires_at REAL,
    video_path TEXT,
    submitted_at REAL,
    finished_at REAL,
    generation_s REAL,
    updated_at REAL NOT NULL,
    last_answer_at REAL
);
CREATE TABLE IF NOT EXISTS attempts (
    task_key TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    task_id TEXT,
    outcome TEXT NOT NULL,
    error TEXT,
    started_at REAL NOT NULL,
    answered_at REAL,
    PRIMARY KEY (task_key, attempt)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    task_key TEXT NOT NULL,
    at REAL NOT NULL,
    status TEXT NOT NULL,
    detail TEXT
);
"""


_FIELD_NAMES = tuple(f.name for f in fields(TaskRecord))
_MAY_HAVE_PAID = ", ".join(f"'{outcome}'" for outcome in MAY_HAVE_PAID)


@dataclass(frozen=True)
class SyncResult:
    """How a manifest's plan met what the ledger already holds."""

    added: int
    kept: int
    updated_pending: int
    retired: int = 0  # pending tasks whose row or repeat left the manifest
    revived: int = 0  # retired tasks the manifest asks for again


class RunState:
    """The ledger of one run folder. Not thread-safe; use it from the event loop only."""

    def __init__(self, path: Path, *, read_only: bool = False):
        self.path = path
        if read_only:
            self._db = _connect_read_only(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            try:
                self._db.executescript(_SCHEMA)
                _migrate(self._db, path)
            except BaseException:
                self._db.close()
                raise
        self._db.row_factory = sqlite3.Row
        self._columns = _select_list(self._db)
        self._inode = os.stat(path).st_ino
        self._closed = False
        self._deferred_writes = 0
        self._deferred_since = 0.0

    @classmethod
    def open(cls, run_dir: Path, *, read_only: bool = False) -> RunState:
        """The folder's ledger; ``read_only`` for readers (``status``, ``report``), which
        then work on a folder they may not write, and never change the file."""
        return cls(run_dir / STATE_FILE, read_only=read_only)

    def close(self) -> None:
        """Commit what is deferred and close; a second call does nothing."""
        if self._closed:
            return
        self.flush()
        self._db.close()
        self._closed = True

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A durable transaction: committed (and fsynced) before it returns.

        Deferred writes made before it ride in the same commit: one fsync instead of
        two, and the file keeps their order. A savepoint keeps a failure here from
        taking them down with it."""
        riding = self._db.in_transaction
        if not riding:
            self._db.execute("BEGIN IMMEDIATE")
        self._db.execute("SAVEPOINT durable")
        try:
            yield self._db
        except BaseException:
            if riding:
                self._db.execute("ROLLBACK TO durable")
                self._db.execute("RELEASE durable")
            else:
                self._db.execute("ROLLBACK")  # and the write lock goes with it
            raise
        self._db.execute("RELEASE durable")
        self.flush()

    @contextmanager
    def _deferred(self) -> Iterator[sqlite3.Connection]:
        """A write that may wait for the next commit (group commit).

        Only for what a crash may lose safely: what polls and downloads learn. A lost
        ``processing``/``succeeded``/``failed`` is learned again by polling the task id
        (which is always durable); a lost ``downloaded`` means fetching the video again.
        Never for the submit path: rule 1 and 2 need each of those on disk at once."""
        if not self._db.in_transaction:
            self._db.execute("BEGIN IMMEDIATE")
            self._deferred_since = time.monotonic()
        yield self._db
        self._deferred_writes += 1
        if (
            self._deferred_writes >= DEFERRED_MAX_WRITES
            or time.monotonic() - self._deferred_since >= DEFERRED_MAX_AGE_S
        ):
            self.flush()

    def flush(self) -> None:
        """Commit deferred writes now (the engine also calls this on a timer)."""
        if self._db.in_transaction:
            self._db.execute("COMMIT")
        self._deferred_writes = 0

    def file_problem(self) -> str | None:
        """Why the ledger file is no longer the one this process opened (deleted, or
        replaced), or None. SQLite keeps writing to the open file either way, so
        without this check a run would go on recording into a ledger nobody can read."""
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            return f"{self.path} was deleted while this run held it"
        if inode != self._inode:
            return f"{self.path} was replaced by another file while this run held it"
        return None

    def rescue(self) -> Path:
        """Save this process's ledger beside the lost one (``state.sqlite.rescued-…``),
        whole and consistent (SQLite's backup API), and return its path."""
        self.flush()
        copy = self.path.with_name(f"{self.path.name}.rescued-{time.strftime('%Y%m%d-%H%M%S')}")
        target = sqlite3.connect(copy)
        try:
            self._db.backup(target)
        finally:
            target.close()
        return copy

    # --- meta ----------------------------------------------------------------

    def set_meta(self, **values: str) -> None:
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                list(values.items()),
            )

    def meta(self) -> dict[str, str]:
        return {row["key"]: row["value"] for row in self._db.execute("SELECT key, value FROM meta")}

    # --- reading ---------------------------------------------------------------

    def tasks(self, statuses: Sequence[TaskStatus] | None = None) -> list[TaskRecord]:
        query = f"SELECT {self._columns} FROM tasks"
        args: list[str] = []
        if statuses:
            query += f" WHERE status IN ({', '.join('?' * len(statuses))})"
            args = [str(s) for s in statuses]
        rows = self._db.execute(query + " ORDER BY position", args).fetchall()
        return [_record(row) for row in rows]

    def get(self, task_key: str) -> TaskRecord:
        row = self._db.execute(
            f"SELECT {self._columns} FROM tasks WHERE task_key = ?", (task_key,)
        ).fetchone()
        if row is None:
            raise KeyError(task_key)
        return _record(row)

    def missing_videos(self) -> int:
        """Succeeded tasks whose video is not downloaded yet (the next run fetches them)."""
        row = self._db.execute(
            "SELECT COUNT(*) FROM tasks WHERE status = ? AND video_path IS NULL",
            (TaskStatus.SUCCEEDED,),
        ).fetchone()
        return row[0]

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT status, COUNT(*) AS n FROM tasks GROUP BY status")
        return {row["status"]: row["n"] for row in rows}

    def attempts(self) -> list[dict]:
        rows = self._db.execute("SELECT * FROM attempts ORDER BY task_key, attempt")
        return [dict(row) for row in rows]

    def sent_count(self) -> int:
        """Attempts that reached (or may have reached) the API: what binds a folder to it."""
        row = self._db.execute(
            f"SELECT COUNT(*) FROM attempts WHERE outcome IN ({_MAY_HAVE_PAID})"
        ).fetchone()
        return row[0]

    def committed_spend(self) -> float:
        """Estimated USD of every attempt the API created or may have created.

        Counted per attempt, not per task: a rerun pays again, and an ``unknown`` may
        have been billed. This is what ``--budget`` is checked against."""
        row = self._db.execute(
            "SELECT COALESCE(SUM(t.est_cost_usd), 0) FROM attempts a "
            "JOIN tasks t ON t.task_key = a.task_key "
            f"WHERE a.outcome IN ({_MAY_HAVE_PAID})"
        ).fetchone()
        return float(row[0])

    # --- planning ---------------------------------------------------------------

    def sync_plan(self, planned: Sequence[Planned]) -> SyncResult:
        """Make the ledger ask for exactly what the manifest asks for, before any submit.

        New tasks are recorded as pending, pending ones whose request changed are
        refreshed, and pending ones whose row (or repeat) left the manifest are
        ``retired``: kept in the ledger, never sent (a run must not pay for a row the
        user removed). A retired task the manifest names again is pending again. A key
        already sent whose request changed raises :class:`PlanConflict` and nothing is
        applied: old and new are never silently mixed in one run folder."""
        now = time.time()
        existing = {
            row["task_key"]: (row["fingerprint"], row["status"])
            for row in self._db.execute("SELECT task_key, fingerprint, status FROM tasks")
        }
        unsent = (TaskStatus.PENDING, TaskStatus.RETIRED)
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
                )
                if task.key not in existing:
                    db.execute(
                        "INSERT INTO tasks (row_id, source, image, request_json, fingerprint, "
                        "est_cost_usd, video_name, task_key, position, status, updated_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                elif status in unsent:
                    db.execute(
                        "UPDATE tasks SET row_id = ?, source = ?, image = ?, request_json = ?, "
                        "fingerprint = ?, est_cost_usd = ?, video_name = ?, updated_at = ? "
                        "WHERE task_key = ?",
                        (*values, now, task.key),
                    )
                    updated += 1
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

    def resume(self) -> int:
        """Apply rule 3: a ``submitting`` task found at start was cut off mid-POST by a
        crash; whether the API created it cannot be known, so it becomes ``unknown``."""
        now = time.time()
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
        now = time.time()
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

    # --- transitions (each one committed before it returns) ----------------------

    def mark_submitting(self, task_key: str) -> int:
        """Rule 1, write before you send. Returns the attempt number."""
        now = time.time()
        with self._transaction() as db:
            attempt = db.execute(
                "INSERT INTO attempts (task_key, attempt, outcome, started_at) "
                "SELECT ?, COALESCE(MAX(attempt), 0) + 1, ?, ? FROM attempts "
                "WHERE task_key = ? RETURNING attempt",
                (task_key, AttemptOutcome.SENDING, now, task_key),
            ).fetchone()[0]
            self._set(db, task_key, TaskStatus.SUBMITTING, now, attempts_change=1, error=None)
        return attempt

    def mark_submitted(self, task_key: str, attempt: int, task_id: str) -> None:
        """Rule 2: the task id is committed the moment the answer arrives."""
        now = time.time()
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

    def mark_not_created(self, task_key: str, attempt: int, error: str) -> None:
        """The API provably created nothing (429, explicit error, no connection): the
        task is pending again, and this attempt does not count as a paid one."""
        now = time.time()
        with self._transaction() as db:
            self._answer_attempt(
                db, task_key, attempt, AttemptOutcome.NOT_CREATED, now, error=error
            )
            self._set(db, task_key, TaskStatus.PENDING, now, attempts_change=-1, error=error)

    def mark_submit_refused(self, task_key: str, attempt: int, error: str) -> None:
        """The API refused the input (400): nothing created, nothing to retry."""
        self._close_attempt(task_key, attempt, AttemptOutcome.REFUSED, TaskStatus.FAILED, error)

    def mark_unknown(self, task_key: str, attempt: int, error: str) -> None:
        self._close_attempt(task_key, attempt, AttemptOutcome.UNKNOWN, TaskStatus.UNKNOWN, error)

    def _close_attempt(
        self,
        task_key: str,
        attempt: int,
        outcome: AttemptOutcome,
        status: TaskStatus,
        error: str,
    ) -> None:
        now = time.time()
        with self._transaction() as db:
            self._answer_attempt(db, task_key, attempt, outcome, now, error=error)
            self._set(db, task_key, status, now, error=error, finished_at=now)

    def mark_processing(self, task_key: str) -> None:
        with self._deferred() as db:
            self._set(db, task_key, TaskStatus.PROCESSING, time.time())

    def mark_failed(self, task_key: str, error: str, generation_s: float | None = None) -> None:
        now = time.time()
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

    def mark_succeeded(
        self,
        task_key: str,
        video_url: str | None,
        expires_at: float | None,
        generation_s: float | None,
    ) -> None:
        now = time.time()
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

    def set_video_url(self, task_key: str, video_url: str, expires_at: float | None) -> None:
        with self._deferred() as db:
            self._update(db, task_key, video_url=video_url, video_url_expires_at=expires_at)

    def mark_downloaded(self, task_key: str, video_path: str) -> None:
        with self._deferred() as db:
            self._update(db, task_key, video_path=video_path, error=None)
            self._event(db, task_key, "downloaded", video_path)

    def note_download_failed(self, task_key: str, error: str) -> None:
        """The video is still there to fetch; say why we have no file yet."""
        with self._deferred() as db:
            self._update(db, task_key, error=error)
            self._event(db, task_key, "download_failed", error)

    def mark_stalled(self, task_key: str, error: str, last_answer_at: float | None) -> None:
        """The deadline passed while the API still ran the task, or while its polls
        failed. Not a failure: the task id is kept, it may still finish, and it is
        billed either way; a later run polls it again. Deferred like every poll-side
        write: a crash that loses it leaves the task in flight, polled again."""
        with self._deferred() as db:
            self._set(
                db,
                task_key,
                TaskStatus.STALLED,
                time.time(),
                error=error,
                last_answer_at=last_answer_at,
            )

    def mark_expired(self, task_key: str, error: str) -> None:
        with self._deferred() as db:
            self._set(db, task_key, TaskStatus.EXPIRED, time.time(), error=error)

    # --- helpers -------------------------------------------------------------------

    @staticmethod
    def _answer_attempt(
        db: sqlite3.Connection,
        task_key: str,
        attempt: int,
        outcome: AttemptOutcome,
        now: float,
        **columns: object,
    ) -> None:
        """Record how one submit attempt ended (created, not_created, refused, unknown)."""
        extra = "".join(f", {name} = ?" for name in columns)
        db.execute(
            f"UPDATE attempts SET outcome = ?, answered_at = ?{extra} "
            "WHERE task_key = ? AND attempt = ?",
            (outcome, now, *columns.values(), task_key, attempt),
        )

    @staticmethod
    def _update(
        db: sqlite3.Connection,
        task_key: str,
        now: float | None = None,
        attempts_change: int = 0,
        **columns,
    ) -> None:
        """Set some columns of one task (and ``updated_at``), inside the caller's
        transaction; ``attempts_change`` moves the paid-attempts count in the same
        statement."""
        columns["updated_at"] = time.time() if now is None else now
        assignments = ", ".join(f"{name} = ?" for name in columns)
        if attempts_change:
            assignments += f", attempts = attempts + {int(attempts_change)}"
        db.execute(
            f"UPDATE tasks SET {assignments} WHERE task_key = ?", (*columns.values(), task_key)
        )

    def _set(
        self,
        db: sqlite3.Connection,
        task_key: str,
        status: TaskStatus,
        now: float,
        attempts_change: int = 0,
        **columns,
    ) -> None:
        """A status change: its columns, and the event that records it."""
        self._update(db, task_key, now, attempts_change, status=str(status), **columns)
        self._event(db, task_key, str(status), columns.get("error") or columns.get("task_id"))

    @staticmethod
    def _event(db: sqlite3.Connection, task_key: str, status: str, detail: str | None) -> None:
        db.execute(
            "INSERT INTO events (task_key, at, status, detail) VALUES (?, ?, ?, ?)",
            (task_key, time.time(), status, detail),
        )


class PlanConflict(Exception):
    """Tasks already sent whose request is different in the manifest now."""

    def __init__(self, keys: list[str]):
        self.keys = keys
        super().__init__(", ".join(keys))


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring an older ledger to :data:`SCHEMA_VERSION` (``PRAGMA user_version``), one
    step at a time; a ledger from a newer kling-batch is refused, never half-read.

    Version 1 is the first ledger (``user_version`` 0 or 1); version 2 adds
    ``tasks.last_answer_at`` (NULL for every older row)."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RunFolderError(
            f"{path} was written by a newer kling-batch (ledger version {version}; this one "
            f"reads up to {SCHEMA_VERSION}): upgrade kling-batch to use it"
        )
    present = {row[1] for row in db.execute("PRAGMA table_info(tasks)")}
    if "last_answer_at" not in present:
        db.execute("ALTER TABLE tasks ADD COLUMN last_answer_at REAL")
    if version != SCHEMA_VERSION:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _select_list(db: sqlite3.Connection) -> str:
    """Every TaskRecord field; NULL for a column an old ledger opened read-only lacks."""
    present = {row[1] for row in db.execute("PRAGMA table_info(tasks)")}
    return ", ".join(n if n in present else f"NULL AS {n}" for n in _FIELD_NAMES)


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """Read a ledger without writing anything, even on a read-only folder.

    A ledger closed cleanly has no WAL file beside it, and is read as ``immutable``:
    nothing is created next to it. One with a WAL (a live run, or one that crashed) is
    read with ``mode=ro``, which sees the WAL's latest commits; where that cannot work
    (a read-only folder without the WAL index), the file alone is read."""
    if not path.is_file():
        raise FileNotFoundError(path)
    uri = path.resolve().as_uri()
    if Path(f"{path}-wal").exists():
        db = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None)
        try:
            db.execute("SELECT COUNT(*) FROM tasks").fetchone()
            return db
        except sqlite3.OperationalError:
            db.close()
    return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)


def _record(row: sqlite3.Row) -> TaskRecord:
    values = dict(row)
    values["status"] = TaskStatus(values["status"])
    return TaskRecord(**values)
