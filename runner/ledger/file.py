"""The run's ledger: one SQLite file that makes a crash, a reboot or Ctrl-C lose nothing.

Every submit-side transition is one short transaction of its own, committed before
the call returns. WAL with ``synchronous=FULL`` makes each commit durable across power
loss, not just a process crash: a lost ``submitting`` row is exactly how a tool pays
twice. What polls and downloads learn is group-committed instead: it waits for the next
durable commit (which carries it in the same fsync) or at most ``DEFERRED_MAX_AGE_S``.
Losing it to a crash costs a poll or a download again, never money.

The file carries its schema version (``PRAGMA user_version``); older ledgers are
migrated on open, and readers (``status``, ``report``) open it without writing at all.
The transitions themselves are in ``runner.ledger.transitions``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, Self

from runner.core.clock import SYSTEM_CLOCK, Clock
from runner.core.records import (
    MAY_HAVE_PAID,
    AttemptOutcome,
    Review,
    TaskRecord,
    TaskStatus,
    Verdict,
)
from runner.ledger.schema import (
    LedgerDamaged,
    connect_for_writing,
    connect_read_only,
    select_list,
)

STATE_FILE = "state.sqlite"
# Deferred (poll-side) writes are committed at least this often: at most this much
# can be lost to a crash, and all of it is learned again by polling.
DEFERRED_MAX_WRITES = 200
DEFERRED_MAX_AGE_S = 0.5


_MAY_HAVE_PAID = ", ".join(f"'{outcome}'" for outcome in MAY_HAVE_PAID)


class LedgerReads(Protocol):
    """What a reader of a folder (``status``, ``report``, the sheet keeper) may ask of
    its ledger: reads only, so a reader's code cannot write the night it reads."""

    def tasks(self, statuses: Sequence[TaskStatus] | None = None) -> list[TaskRecord]: ...
    def meta(self) -> dict[str, str]: ...
    def counts(self) -> dict[str, int]: ...
    def missing_videos(self) -> int: ...
    def committed_spend(self) -> float: ...
    def reviews(self) -> dict[str, Review]: ...
    def get(self, task_key: str) -> TaskRecord: ...
    def links_by_parent(self) -> dict[str, TaskRecord]: ...
    def tasks_changed_since(self, since: float, also: Iterable[str] = ()) -> list[TaskRecord]: ...
    def close(self) -> None: ...


class Ledger:
    """One run folder's ledger file: opening it (or reading it without writing), its
    transactions, its meta, and every read. Not thread-safe; use it from the event loop
    only. :class:`runner.ledger.transitions.RunState` adds the transitions a run makes."""

    def __init__(self, path: Path, *, read_only: bool = False, clock: Clock = SYSTEM_CLOCK):
        self.path = path
        self.clock = clock  # what the ledger's timestamps read
        db: sqlite3.Connection | None = None
        try:
            db = connect_read_only(path) if read_only else connect_for_writing(path)
            self._columns = select_list(db)
        except sqlite3.DatabaseError as exc:
            if db is not None:
                db.close()
            if isinstance(exc, sqlite3.OperationalError) and "malformed" not in str(exc):
                raise  # locked, read-only, disk full: the machine, said elsewhere
            raise LedgerDamaged(path, exc) from None
        self._db = db
        self._db.row_factory = sqlite3.Row
        self._inode = os.stat(path).st_ino
        self._closed = False
        self._deferred_writes = 0
        self._deferred_since = 0.0

    @classmethod
    def open(cls, run_dir: Path, *, read_only: bool = False, clock: Clock = SYSTEM_CLOCK) -> Self:
        """The folder's ledger; ``read_only`` for readers (``status``, ``report``), which
        then work on a folder they may not write, and never change the file."""
        return cls(run_dir / STATE_FILE, read_only=read_only, clock=clock)

    @property
    def closed(self) -> bool:
        return self._closed

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
            self._deferred_since = self.clock.monotonic()
        yield self._db
        self._deferred_writes += 1
        if (
            self._deferred_writes >= DEFERRED_MAX_WRITES
            or self.clock.monotonic() - self._deferred_since >= DEFERRED_MAX_AGE_S
        ):
            self.flush()

    @property
    def uncommitted(self) -> bool:
        """Deferred writes are waiting for the next commit (or a transaction is open)."""
        return self._db.in_transaction

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

    def tasks_changed_since(self, since: float, also: Iterable[str] = ()) -> list[TaskRecord]:
        """Tasks whose row changed after ``since`` (a ledger time), and those of
        ``also``, in order: what a page that last looked at ``since`` must redraw."""
        rows = self._db.execute(
            f"SELECT {self._columns} FROM tasks WHERE updated_at > ? ORDER BY position", (since,)
        ).fetchall()
        found = [_record(row) for row in rows]
        seen = {record.task_key for record in found}
        found += [self.get(key) for key in also if key not in seen]
        return sorted(found, key=lambda record: record.position)

    def links_by_parent(self) -> dict[str, TaskRecord]:
        """Each chain link, by the task it continues (one read for a whole redo)."""
        rows = self._db.execute(
            f"SELECT {self._columns} FROM tasks WHERE parent IS NOT NULL"
        ).fetchall()
        return {row["parent"]: _record(row) for row in rows}

    def get(self, task_key: str) -> TaskRecord:
        row = self._db.execute(
            f"SELECT {self._columns} FROM tasks WHERE task_key = ?", (task_key,)
        ).fetchone()
        if row is None:
            raise KeyError(task_key)
        return _record(row)

    def missing_videos(self) -> int:
        """Succeeded tasks whose video is not downloaded yet, or whose file was deleted
        or changed since (the next run fetches them)."""
        row = self._db.execute(
            "SELECT COUNT(*) FROM tasks WHERE status = ? AND video_path IS NULL",
            (TaskStatus.SUCCEEDED,),
        ).fetchone()
        return int(row[0]) + len(self.lost_videos())

    def lost_videos(self) -> list[str]:
        """Keys of succeeded tasks whose downloaded file is gone, or is no longer the
        size it was written at (replaced, or cut by a copy): the ledger's word that a
        video is here is checked against the disk, never taken on trust."""
        rows = self._db.execute(
            "SELECT task_key, video_path, video_bytes FROM tasks "
            "WHERE status = ? AND video_path IS NOT NULL",
            (TaskStatus.SUCCEEDED,),
        )
        run_dir = self.path.parent
        lost = []
        for key, video_path, size in rows:
            try:
                on_disk = os.stat(run_dir / video_path).st_size
            except OSError:
                lost.append(key)
                continue
            if size is not None and on_disk != size:
                lost.append(key)
        return lost

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT status, COUNT(*) AS n FROM tasks GROUP BY status")
        return {row["status"]: row["n"] for row in rows}

    def reviews(self) -> dict[str, Review]:
        """Each judged task's review of its latest attempt (a redo's new attempt is not
        judged yet). An old ledger read without writing has no reviews table: none."""
        try:
            rows = self._db.execute(
                "SELECT r.* FROM reviews r JOIN tasks t "
                "ON t.task_key = r.task_key AND r.attempt = t.attempts"
            ).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            return {}
        return {row["task_key"]: review_of(row) for row in rows}

    def attempts(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT * FROM attempts ORDER BY task_key, attempt")
        return [dict(row) for row in rows]

    def task_id_holder(self, task_id: str, other_than: str) -> str | None:
        """The task (other than ``other_than``) that an attempt created under this task
        id, if any: one id is one task at the API."""
        row = self._db.execute(
            "SELECT task_key FROM attempts WHERE task_id = ? AND outcome = ? AND task_key != ? "
            "LIMIT 1",
            (task_id, AttemptOutcome.CREATED, other_than),
        ).fetchone()
        return str(row[0]) if row else None

    def sent_count(self) -> int:
        """Attempts that reached (or may have reached) the API: what binds a folder to it."""
        row = self._db.execute(
            f"SELECT COUNT(*) FROM attempts WHERE outcome IN ({_MAY_HAVE_PAID})"
        ).fetchone()
        return int(row[0])

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

    def _update(
        self,
        db: sqlite3.Connection,
        task_key: str,
        now: float | None = None,
        attempts_change: int = 0,
        **columns: Any,
    ) -> None:
        """Set some columns of one task (and ``updated_at``), inside the caller's
        transaction; ``attempts_change`` moves the paid-attempts count in the same
        statement."""
        columns["updated_at"] = self.clock.time() if now is None else now
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
        **columns: Any,
    ) -> None:
        """A status change: its columns, and the event that records it."""
        self._update(db, task_key, now, attempts_change, status=str(status), **columns)
        self._event(db, task_key, str(status), columns.get("error") or columns.get("task_id"))

    def _event(
        self, db: sqlite3.Connection, task_key: str, status: str, detail: str | None
    ) -> None:
        db.execute(
            "INSERT INTO events (task_key, at, status, detail) VALUES (?, ?, ?, ?)",
            (task_key, self.clock.time(), status, detail),
        )


def _record(row: sqlite3.Row) -> TaskRecord:
    values = dict(row)
    values["status"] = TaskStatus(values["status"])
    return TaskRecord(**values)


def review_of(row: sqlite3.Row) -> Review:
    verdict = row["verdict"]
    edits = json.loads(row["edits"]) if row["edits"] else {}
    return Review(
        task_key=row["task_key"],
        attempt=row["attempt"],
        verdict=Verdict(verdict) if verdict else None,
        note=row["note"] or "",
        edits=tuple(edits.items()),
        judged_at=row["judged_at"],
    )
