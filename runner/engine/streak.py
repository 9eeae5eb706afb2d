"""A bad night stops itself: when the last N tasks to finish all failed (a model down,
a prompt rule that refuses every row), submitting more only pays for more failures.

Counted over every cause, so that a batch-wide problem is caught whatever the API
calls it, and said by cause: one moderated row among good ones never makes a streak
(a success in between starts it again).
"""

from __future__ import annotations

from collections import Counter

from runner.core.causes import common_reason, failure_class
from runner.core.errors import BadNight
from runner.core.records import TaskEvent

DEFAULT_MAX_FAILURE_STREAK = 10


class FailureStreak:
    """Fed every task that finishes, in the order they finish (``note``); ``tripped``
    says why submitting should stop, once the streak reaches ``limit`` (0: never)."""

    def __init__(self, limit: int = DEFAULT_MAX_FAILURE_STREAK):
        self.limit = limit
        self._reasons: list[str | None] = []  # the failures since the last success
        self.tripped: BadNight | None = None

    def hear(self, event: TaskEvent) -> None:
        """A run's listener (``RunState.listeners``): every task that finishes counts."""
        if event.finished:
            self.note(event.task_key, event.failed, event.reason)

    def note(self, task_key: str, failed: bool, reason: str | None) -> None:
        if not self.limit or self.tripped is not None:
            return
        if not failed:
            self._reasons.clear()
            return
        self._reasons.append(reason)
        if len(self._reasons) >= self.limit:
            self.tripped = BadNight(self._said())

    def _said(self) -> str:
        causes = Counter(str(failure_class(r)) for r in self._reasons)
        by_cause = ", ".join(f"{n} {cause}" for cause, n in causes.most_common())
        reason, times = common_reason(self._reasons)
        return (
            f"the last {len(self._reasons)} tasks to finish all failed ({by_cause}); "
            f"{times} of them: {reason[:200]}"
        )
