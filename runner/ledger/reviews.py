"""A person's judgements in the ledger, and the revised requests a redo sends.

``kling-batch review`` writes here while a run may hold the same ledger: each write is
one short durable transaction on the review's own tables (``reviews``), so it waits at
most for the run's group commit and never touches a task's status. A judgement belongs
to the attempt it judged: once a redo sends the task again, its new video starts
unjudged, and the old verdict stays as history.

A redo with edits replaces the task's request; the request it replaces is kept in
``revisions`` beside the attempts that sent it, so an old video is never described by
a new prompt, and ``run`` with the original manifest still recognises the task.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from runner.core.records import SETTLED, TaskRecord, Verdict
from runner.ledger.file import Ledger

_UNSET = object()  # "leave this part of the review as it is"


class Judging(Ledger):
    """The ledger as ``review`` writes it: judgements only (no transitions, no lock)."""

    def judge(
        self,
        task_key: str,
        verdict: Verdict | object | None = _UNSET,
        note: str | object = _UNSET,
        edits: Mapping[str, object] | object | None = _UNSET,
    ) -> None:
        """Set some parts of the review of ``task_key``'s latest attempt (the others
        stay as they are); committed before it returns."""
        now = self.clock.time()
        with self._transaction() as db:
            row = db.execute(
                "SELECT t.attempts, r.verdict, r.note, r.edits FROM tasks t LEFT JOIN reviews r "
                "ON r.task_key = t.task_key AND r.attempt = t.attempts WHERE t.task_key = ?",
                (task_key,),
            ).fetchone()
            if row is None:
                raise KeyError(task_key)
            attempt, old_verdict, old_note, old_edits = row
            kept_verdict = old_verdict if verdict is _UNSET else verdict
            kept_note = (old_note or "") if note is _UNSET else note
            kept_edits = old_edits if edits is _UNSET else (json.dumps(edits) if edits else None)
            db.execute(
                "INSERT OR REPLACE INTO reviews "
                "(task_key, attempt, verdict, note, edits, judged_at) VALUES (?, ?, ?, ?, ?, ?)",
                (task_key, attempt, kept_verdict, kept_note, kept_edits, now),
            )
            self._event(db, task_key, "judged", str(kept_verdict or "unjudged"))


class Revising(Judging):
    """What a redo does to a task's request (``rerun --rejected``, the review's redo)."""

    def revise(self, revised: Sequence[TaskRecord]) -> int:
        """Give each task of ``revised`` its new request, keeping the one it replaces in
        ``revisions``; a task whose request did not change is left alone. Returns how
        many changed."""
        now = self.clock.time()
        changed = 0
        with self._transaction() as db:
            for record in revised:
                old = db.execute(
                    "SELECT attempts, request_json, fingerprint, est_cost_usd, pictures, status "
                    "FROM tasks WHERE task_key = ?",
                    (record.task_key,),
                ).fetchone()
                if old is None or old["fingerprint"] == record.fingerprint:
                    continue
                if old["status"] not in SETTLED:  # a task at work keeps what it was sent with
                    raise ValueError(f"{record.task_key} is {old['status']}: not revised")
                db.execute(
                    "INSERT OR REPLACE INTO revisions (task_key, attempt, request_json, "
                    "fingerprint, est_cost_usd, pictures, revised_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.task_key,
                        old["attempts"],
                        old["request_json"],
                        old["fingerprint"],
                        old["est_cost_usd"],
                        old["pictures"],
                        now,
                    ),
                )
                self._update(
                    db,
                    record.task_key,
                    now,
                    request_json=record.request_json,
                    fingerprint=record.fingerprint,
                    est_cost_usd=record.est_cost_usd,
                    pictures=record.pictures,
                )
                self._event(db, record.task_key, "revised", "request changed for a redo")
                changed += 1
        return changed

    def first_fingerprints(self) -> dict[str, str]:
        """Each revised task's fingerprint before its first revision: the manifest's."""
        first: dict[str, str] = {}
        for key, fingerprint in self._db.execute(
            "SELECT task_key, fingerprint FROM revisions ORDER BY attempt DESC"
        ):
            first[key] = fingerprint
        return first
