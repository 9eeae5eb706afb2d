"""What the API's answers mean, as pure functions: a Task Result's fields, the status a
task is in, the typed error an answer that is not a success becomes, and a Retry-After.

The client (``runner.api.client``) reads answers off the wire and hands their text here;
nothing here touches the network, so every rule is pinned by a table test
(``tests/test_retry.py``, ``tests/test_client.py``).
"""

from __future__ import annotations

import email.utils
import json
import time
from dataclasses import dataclass
from typing import Any

from runner.core.errors import (
    AuthError,
    BalanceExhausted,
    EndpointNotFound,
    InvalidRequest,
    KlingBatchError,
    RateLimited,
    ServerError,
    SubmitOutcomeUnknown,
    TaskNotFound,
)

SUCCEED = "TASK_STATUS_SUCCEED"
FAILED = "TASK_STATUS_FAILED"
PROCESSING = "TASK_STATUS_PROCESSING"
KNOWN_RUNNING = frozenset({"TASK_STATUS_QUEUED", PROCESSING})
# An undocumented status that says the task ended without a video (Novita's JavaScript
# SDK knows TASK_STATUS_UNKNOWN; an API can add TASK_STATUS_CANCELED): failed, not
# "still running" until a deadline makes it stalled for ever.
_ENDED_WORDS = ("CANCEL", "FAIL", "ERROR", "REJECT", "ABORT", "EXPIRE", "TIMEOUT")


def ended_without_video(status: str) -> bool:
    """FAILED, or an undocumented status whose name says the task ended."""
    return status == FAILED or (
        status not in KNOWN_RUNNING
        and status != SUCCEED
        and any(word in status.upper() for word in _ENDED_WORDS)
    )


# The one 500 reason whose answer itself says nothing was created: a submit may be
# retried. BILLING_FAILED, TASK_FAILED and GET_RESULT_FAILED are listed by name only; no
# source says they come before a task is made, and one that came after it would be paid
# twice by a retry: they are ``unknown`` (shared/novita-api.md, "What the pages leave open").
_NOTHING_CREATED_500 = frozenset({"CREATE_TASK_FAILED"})
_AUTH_400 = frozenset({"MISSING_API_KEY"})
_BALANCE_400 = frozenset({"BILLING_BALANCE_NOT_ENOUGH"})


@dataclass(frozen=True)
class TaskResult:
    """The parts of a Task Result answer the runner uses; every field optional but status."""

    task_id: str
    status: str
    reason: str
    eta_s: float | None
    progress_percent: float | None
    video_url: str | None
    video_url_ttl_s: int | None
    submit_time_ms: int | None
    complete_time_ms: int | None
    execute_time_ms: int | None = None

    @property
    def queued_s(self) -> float | None:
        """How long the API kept it queued, by its own clock (0 or missing: unknown)."""
        if self.submit_time_ms and self.execute_time_ms:
            return max(0.0, (self.execute_time_ms - self.submit_time_ms) / 1000)
        return None

    @property
    def generation_s(self) -> float | None:
        if self.submit_time_ms and self.complete_time_ms:
            return max(0.0, (self.complete_time_ms - self.submit_time_ms) / 1000)
        return None


@dataclass(frozen=True)
class Probe:
    """An answer as it came: status, headers (lower-case names), body, round trip."""

    status: int
    headers: dict[str, str]
    text: str
    elapsed_s: float

    def json(self) -> dict[str, Any]:
        return json_object(self.text)


def parse_task_result(task_id: str, data: dict[str, Any]) -> TaskResult:
    """Lenient on purpose: fields vary by task and by API version; a missing one is None."""
    task = _mapping(data.get("task"))
    listed = data.get("videos")
    videos: list[Any] = listed if isinstance(listed, list) else []
    video = next((v for v in videos if isinstance(v, dict) and v.get("video_url")), {})
    debug = _mapping(_mapping(data.get("extra")).get("debug_info"))
    return TaskResult(
        task_id=str(task.get("task_id") or task_id),
        status=str(task.get("status") or "TASK_STATUS_UNKNOWN"),
        reason=str(task.get("reason") or ""),
        eta_s=_number(task.get("eta")),
        progress_percent=_number(task.get("progress_percent")),
        video_url=video.get("video_url"),
        video_url_ttl_s=_integer(video.get("video_url_ttl")),
        submit_time_ms=_integer(debug.get("submit_time_ms")),
        complete_time_ms=_integer(debug.get("complete_time_ms")),
        execute_time_ms=_integer(debug.get("execute_time_ms")),
    )


def error_for(status: int, text: str, headers: Any, *, submitting: bool) -> KlingBatchError:
    """The typed error for an answer that is not a success (``runner.engine.retry`` decides
    what follows from it)."""
    body = json_object(text)
    reason = str(body.get("reason") or "")
    message = str(body.get("message") or "").strip() or snippet(text)
    if status == 429:
        return RateLimited(
            status, reason or "RATE_LIMIT_EXCEEDED", message, retry_after_seconds(headers)
        )
    if status in (401, 403) or reason in _AUTH_400:
        return AuthError(status, reason or "UNAUTHORIZED", message or "the API key was refused")
    if reason in _BALANCE_400:
        return BalanceExhausted(status, reason, message)
    if status == 404:
        if submitting:
            return EndpointNotFound(
                status, reason or "NOT_FOUND", message or "check NOVITA_BASE_URL"
            )
        return TaskNotFound(status, reason or "TASK_NOT_FOUND", message)
    if 400 <= status < 500:
        return InvalidRequest(status, reason or f"HTTP_{status}", message)
    # 5xx. Polls are reads: always safe to retry. A submit only where nothing was made.
    nothing_created = status == 503 or (status == 500 and reason in _NOTHING_CREATED_500)
    if submitting and not nothing_created:
        return SubmitOutcomeUnknown(f"HTTP {status} {reason}".strip() + f": {message}")
    return ServerError(status, reason or f"HTTP_{status}", message, retryable=True)


def retry_after_seconds(headers: Any) -> float | None:
    """``Retry-After`` as seconds or an HTTP date; None when absent or unreadable. A date
    is counted from the answer's own ``Date`` (the server's clock), not ours: a machine
    clock minutes behind would read a pause of seconds as one of minutes. (The limiter
    caps what it waits, whatever this says.)"""
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    when, sent = _http_date(value), _http_date(headers.get("Date"))
    if when is None:
        return None
    return max(0.0, when - (sent if sent is not None else time.time()))


def _http_date(value: Any) -> float | None:
    try:
        return email.utils.parsedate_to_datetime(value).timestamp() if value else None
    except (TypeError, ValueError):
        return None


def json_object(text: str) -> dict[str, Any]:
    """Gateways answer HTML; a body that is not a JSON object reads as empty."""
    try:
        data = json.loads(text)
    except (ValueError, TypeError):
        return {}
    return data if isinstance(data, dict) else {}


def _mapping(value: Any) -> dict[str, Any]:
    """A JSON object, or an empty one when the field is missing or of another type."""
    return value if isinstance(value, dict) else {}


def snippet(text: str) -> str:
    return " ".join(text.split())[:200]


def _number(value: Any) -> float | None:
    try:
        return float(str(value)) if value not in (None, "") else None
    except ValueError:
        return None


def _integer(value: Any) -> int | None:
    """The API sends some integers as strings ("3600"); accept both."""
    number = _number(value)
    return int(number) if number is not None else None
