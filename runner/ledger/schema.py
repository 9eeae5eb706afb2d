"""The ledger's file: its schema and version, how it is opened (for writing, or read
without writing anything), and how an older one is migrated on open. ``Ledger``
(``runner.ledger.file``) holds the reads and the transactions.
"""

from __future__ import annotations

import sqlite3
from dataclasses import fields
from pathlib import Path

from runner.core.errors import RunFolderError
from runner.core.records import TaskRecord

SCHEMA_VERSION = 6  # PRAGMA user_version; see migrate

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
    last_answer_at REAL,
    video_bytes INTEGER,
    video_s REAL,
    video_problem TEXT,
    pictures TEXT,
    parent TEXT,
    chain TEXT,
    parent_video TEXT
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
CREATE INDEX IF NOT EXISTS attempts_by_task_id ON attempts (task_id);
-- A person's judgement of one attempt's video (kling-batch review): the verdict of a
-- task is the row of its latest attempt; a redo's new attempt starts unjudged.
CREATE TABLE IF NOT EXISTS reviews (
    task_key TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    verdict TEXT,
    note TEXT NOT NULL DEFAULT '',
    edits TEXT,
    judged_at REAL NOT NULL,
    PRIMARY KEY (task_key, attempt)
);
-- A request a redo replaced, kept beside the attempts that sent it (up to ``attempt``).
CREATE TABLE IF NOT EXISTS revisions (
    task_key TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    request_json TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    est_cost_usd REAL NOT NULL,
    pictures TEXT,
    revised_at REAL NOT NULL,
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

FIELD_NAMES = tuple(f.name for f in fields(TaskRecord))


_ADDED_COLUMNS = (  # by version
    ("last_answer_at", "REAL"),
    ("video_bytes", "INTEGER"),
    ("video_s", "REAL"),
    ("video_problem", "TEXT"),
    ("pictures", "TEXT"),
    ("parent", "TEXT"),
    ("chain", "TEXT"),
    ("parent_video", "TEXT"),
)


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring an older ledger to :data:`SCHEMA_VERSION` (``PRAGMA user_version``), one
    step at a time; a ledger from a newer kling-batch is refused, never half-read.

    Version 1 is the first ledger (``user_version`` 0 or 1); version 2 adds
    ``tasks.last_answer_at``, version 3 ``tasks.video_bytes``, ``video_s`` and
    ``video_problem``, version 4 ``pictures`` (NULL for every older row), version 5 the
    ``reviews`` and ``revisions`` tables (created empty by the schema script), version 6
    ``parent``, ``chain`` and ``parent_video`` (chains; NULL for every older row)."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RunFolderError(
            f"{path} was written by a newer kling-batch (ledger version {version}; this one "
            f"reads up to {SCHEMA_VERSION}): upgrade kling-batch to use it"
        )
    present = {row[1] for row in db.execute("PRAGMA table_info(tasks)")}
    for column, kind in _ADDED_COLUMNS:
        if column not in present:
            db.execute(f"ALTER TABLE tasks ADD COLUMN {column} {kind}")
    if version != SCHEMA_VERSION:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def select_list(db: sqlite3.Connection) -> str:
    """Every TaskRecord field; NULL for a column an old ledger opened read-only lacks."""
    present = {row[1] for row in db.execute("PRAGMA table_info(tasks)")}
    return ", ".join(n if n in present else f"NULL AS {n}" for n in FIELD_NAMES)


def connect_for_writing(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        migrate(db, path)
    except BaseException:
        db.close()
        raise
    return db


class LedgerDamaged(RunFolderError):
    """The ledger file is not a readable SQLite database (overwritten, cut by a copy,
    a disk fault). Nothing was sent: a run that went on without knowing what was paid
    for could pay for every task again."""

    def __init__(self, path: Path, cause: sqlite3.DatabaseError):
        copies = sorted(path.parent.glob(f"{path.name}.rescued-*"))
        where = (
            "copies a run saved: " + ", ".join(str(c) for c in copies)
            if copies
            else f"no {path.name}.rescued-* copy is beside it"
        )
        super().__init__(
            f"the ledger {path} is damaged ({cause}): nothing was sent\n"
            f"  it is the record of what was paid for; {where}\n"
            f"  restore a good copy over it (a backup, or a rescued copy) and resume; "
            "a new --out folder would pay again for every task"
        )


def connect_read_only(path: Path) -> sqlite3.Connection:
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
