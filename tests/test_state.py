"""The ledger: every transition is committed before the call returns, and survives."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
from pathlib import Path

import pytest

from jobs import DEFAULT_MODEL, model_named
from runner.core.errors import RunFolderError
from runner.core.records import TaskStatus
from runner.ledger.schema import SCHEMA_VERSION
from runner.ledger.transitions import PlanConflict, RunState
from runner.manifest.plan import PlannedTask


def planned(key: str, prompt: str = "p") -> PlannedTask:
    model = model_named(DEFAULT_MODEL)
    request = model.request(
        model.check({"image": "https://example.com/a.png", "prompt": prompt})[0]
    )
    return PlannedTask(
        key=key,
        row_id=key.split("/")[0],
        source="m.yaml:2",
        image="https://example.com/a.png",
        request=request,
        fingerprint=request.fingerprint({}),
        est_cost_usd=0.7,
        video_name=key.replace("/", "_") + ".mp4",
    )


def status_seen_by_another_connection(path: Path, key: str) -> str:
    with sqlite3.connect(path) as other:
        return other.execute("SELECT status FROM tasks WHERE task_key = ?", (key,)).fetchone()[0]


def test_write_before_send_is_visible_to_another_process_at_once(tmp_path):
    state = RunState.open(tmp_path)
    state.sync_plan([planned("a/1")])
    attempt = state.mark_submitting("a/1")
    assert status_seen_by_another_connection(state.path, "a/1") == "submitting"
    state.mark_submitted("a/1", attempt, "task-123")
    assert status_seen_by_another_connection(state.path, "a/1") == "queued"
    with sqlite3.connect(state.path) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_state_survives_reopening(tmp_path):
    state = RunState.open(tmp_path)
    state.sync_plan([planned("a/1"), planned("b/1")])
    attempt = state.mark_submitting("a/1")
    state.mark_submitted("a/1", attempt, "task-1")
    state.close()
    again = RunState.open(tmp_path)
    assert again.get("a/1").task_id == "task-1"
    assert again.counts() == {"queued": 1, "pending": 1}


def test_resume_turns_submitting_into_unknown_and_keeps_the_rest(tmp_path):
    state = RunState.open(tmp_path)
    state.sync_plan([planned("a/1"), planned("b/1"), planned("c/1")])
    state.mark_submitting("a/1")  # crashed mid-POST
    attempt = state.mark_submitting("b/1")
    state.mark_submitted("b/1", attempt, "task-b")
    assert state.settle_cut_off_submits() == 1
    assert state.get("a/1").status == TaskStatus.UNKNOWN
    assert "may have created it" in state.get("a/1").error
    assert state.get("b/1").status == TaskStatus.QUEUED
    assert state.get("c/1").status == TaskStatus.PENDING
    assert [a["outcome"] for a in state.attempts()] == ["unknown", "created"]


def test_a_provably_uncreated_attempt_does_not_count(tmp_path):
    state = RunState.open(tmp_path)
    state.sync_plan([planned("a/1")])
    first = state.mark_submitting("a/1")
    state.mark_not_created("a/1", first, "HTTP 429")
    second = state.mark_submitting("a/1")
    state.mark_submitted("a/1", second, "task-1")
    record = state.get("a/1")
    assert (first, second, record.attempts, record.status) == (1, 2, 1, TaskStatus.QUEUED)
    assert [a["outcome"] for a in state.attempts()] == ["not_created", "created"]


def test_sync_keeps_unchanged_updates_pending_and_refuses_changed_sent_tasks(tmp_path):
    state = RunState.open(tmp_path)
    first = state.sync_plan([planned("a/1"), planned("b/1")])
    assert (first.added, first.kept) == (2, 0)
    attempt = state.mark_submitting("a/1")
    state.mark_submitted("a/1", attempt, "task-a")

    second = state.sync_plan([planned("a/1"), planned("b/1", "new prompt"), planned("c/1")])
    assert (second.added, second.kept, second.updated_pending) == (1, 1, 1)
    assert "new prompt" in state.get("b/1").request_json

    with pytest.raises(PlanConflict) as caught:
        state.sync_plan([planned("a/1", "changed after sending"), planned("d/1")])
    assert caught.value.keys == ["a/1"]
    with pytest.raises(KeyError):
        state.get("d/1")  # nothing of a refused plan is applied


def test_every_transition_is_an_event(tmp_path):
    state = RunState.open(tmp_path)
    state.sync_plan([planned("a/1")])
    attempt = state.mark_submitting("a/1")
    state.mark_submitted("a/1", attempt, "task-a")
    state.mark_processing("a/1")
    state.mark_succeeded("a/1", "http://v", None, 3.0)
    state.flush()
    with sqlite3.connect(state.path) as other:
        statuses = [row[0] for row in other.execute("SELECT status FROM events ORDER BY id")]
    assert statuses == ["submitting", "queued", "processing", "succeeded"]


def test_poll_side_writes_are_group_committed_and_a_crash_only_loses_those(tmp_path):
    state = RunState.open(tmp_path)
    state.sync_plan([planned("a/1"), planned("b/1")])
    attempt = state.mark_submitting("a/1")
    state.mark_submitted("a/1", attempt, "task-a")
    state.mark_succeeded("a/1", "http://v", None, 3.0)  # deferred
    assert state.get("a/1").status == "succeeded"  # its own connection sees it at once

    def seen_by_another_process() -> dict:
        with sqlite3.connect(state.path) as other:
            return dict(other.execute("SELECT task_key, status FROM tasks"))

    assert seen_by_another_process()["a/1"] == "queued"  # not committed yet
    # The next submit-side write commits what was deferred with itself, in one commit.
    state.mark_submitting("b/1")
    assert seen_by_another_process() == {"a/1": "succeeded", "b/1": "submitting"}

    state.close()
    # A process makes a deferred write and dies at once, as kill -9 would: no flush.
    child = multiprocessing.get_context("fork").Process(
        target=_defer_then_die, args=(tmp_path, "a/1")
    )
    child.start()
    child.join(10)
    assert child.exitcode == 9
    reopened = RunState.open(tmp_path)
    record = reopened.get("a/1")
    assert record.status == "succeeded" and record.task_id == "task-a"  # polled again
    assert (
        reopened.settle_cut_off_submits() == 1
    )  # b/1 was cut off mid-submit: unknown, never resent


def test_a_failed_durable_write_keeps_the_deferred_writes_before_it(tmp_path):
    """A durable transaction rides on the deferred one (one fsync); if it fails, only
    its own writes are undone (a savepoint), not what polling had learned."""
    state = RunState.open(tmp_path)
    state.sync_plan([planned("a/1"), planned("b/1")])
    state.mark_submitted("a/1", state.mark_submitting("a/1"), "task-a")
    state.mark_succeeded("a/1", "http://v", None, 3.0)  # deferred
    with pytest.raises(PlanConflict):  # a durable transaction that fails half-way
        state.sync_plan([planned("a/1", prompt="changed"), planned("c/1")])
    state.flush()
    with sqlite3.connect(state.path) as other:
        rows = dict(other.execute("SELECT task_key, status FROM tasks"))
    assert rows == {"a/1": "succeeded", "b/1": "pending"}  # c/1 was never added


def test_a_failed_durable_write_on_its_own_releases_the_ledger(tmp_path):
    """With nothing deferred, a failed durable transaction is rolled back whole: no
    write lock is left behind for another process to wait on."""
    state = RunState.open(tmp_path)
    state.sync_plan([planned("a/1")])
    state.mark_submitted("a/1", state.mark_submitting("a/1"), "task-a")
    with pytest.raises(PlanConflict):
        state.sync_plan([planned("a/1", prompt="changed"), planned("c/1")])
    assert not state.uncommitted
    with sqlite3.connect(state.path, timeout=0.1) as other:
        other.execute("UPDATE meta SET value = value")  # would fail if still locked
        assert [row[0] for row in other.execute("SELECT task_key FROM tasks")] == ["a/1"]


def test_a_first_version_ledger_opens_and_is_migrated_and_a_newer_one_is_refused(tmp_path):
    """Run folders written by earlier kling-batch versions keep working."""
    path = tmp_path / "state.sqlite"
    state = RunState(path)
    state.close()
    with sqlite3.connect(path) as db:  # as the first kling-batch left it
        db.execute("ALTER TABLE tasks DROP COLUMN last_answer_at")
        db.execute("ALTER TABLE tasks DROP COLUMN video_bytes")
        db.execute("DROP TABLE reviews")
        db.execute("DROP TABLE revisions")
        db.execute("PRAGMA user_version = 0")
    reader = RunState(path, read_only=True)  # read without writing: no reviews yet, none
    assert reader.reviews() == {}
    reader.close()
    RunState(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        columns = {row[1] for row in db.execute("PRAGMA table_info(tasks)")}
        assert {"last_answer_at", "video_bytes"} <= columns
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        assert {"reviews", "revisions"} <= tables
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(RunFolderError, match="written by a newer kling-batch"):
        RunState(path)


def _defer_then_die(run_dir: Path, key: str) -> None:
    state = RunState.open(run_dir)
    state.mark_processing(key)  # deferred: waits for the next commit
    assert state.uncommitted
    os._exit(9)  # no flush, no close: the open transaction dies with the process
