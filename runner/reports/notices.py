"""Telling the owner, who was asleep: one message when a run ends or stops early
(Apprise: ntfy, Slack, Discord, Telegram, e-mail, JSON webhooks and ~100 more), and a
command of theirs run once the reports are written (``--on-finish``).

Neither is ever in the way: a message is sent off the event loop (after it ended) in
a thread given a few seconds; one that fails, or a hook that fails, is a warning, never
a change of the run's exit code. Notification URLs hold tokens: they are secrets like
the API key (redacted from every log line, never saved in the run folder, never shown
but as ``scheme://host``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from runner.core.errors import UsageError

log = logging.getLogger(__name__)

NOTIFY_ENV = "KLING_BATCH_NOTIFY"
SEND_TIMEOUT_S = 8.0  # for every URL of a message together
ON_FINISH_TIMEOUT_S = 600.0
TAIL_CHARS = 2000


def notify_urls(given: Sequence[str], env: Mapping[str, str] = os.environ) -> list[str]:
    """``--notify`` URLs, then ``$KLING_BATCH_NOTIFY`` (several, by spaces or commas,
    as Apprise takes them)."""
    from_env = [u for u in re.split(r"[\s,]+", env.get(NOTIFY_ENV, "")) if u]
    return list(dict.fromkeys([*given, *from_env]))


def secret_parts(urls: Sequence[str]) -> list[str]:
    """What of each URL must never be written: the URL, and each piece of it that can
    hold a token (user, password, path parts, query values), since an HTTP library's
    debug line shows the path it posts to without the scheme."""
    parts: list[str] = []
    for url in urls:
        split = urlsplit(url)
        pieces = [split.username, split.password, *split.path.split("/")]
        pieces += [value for _, _, value in (q.partition("=") for q in split.query.split("&"))]
        parts += [url, *(p for p in pieces if p and len(p) >= 4)]
    return parts


def shown(url: str) -> str:
    """A notification URL as it may be shown: its scheme and host, never its token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}"


@dataclass(frozen=True)
class Message:
    title: str
    body: str


def send(urls: Sequence[str], message: Message, timeout_s: float = SEND_TIMEOUT_S) -> list[str]:
    """Send ``message`` to every URL; returns the warnings (empty: all delivered)."""
    if not urls:
        return []
    warnings: list[str] = []
    _load_apprise()
    thread = threading.Thread(target=_send, args=(urls, message, warnings), daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        return [f"notification not delivered within {timeout_s:g} s (left to finish alone)"]
    return warnings


def check_urls(urls: Sequence[str]) -> None:
    """Every URL one Apprise can send to, before anything is made or sent: a mistyped
    scheme found at the end of the night is a night with no message. A bad one is a
    :class:`UsageError` that shows it as ``scheme://host`` (never its token)."""
    if not urls:
        return
    _load_apprise()
    import apprise

    for url in urls:
        try:
            known = apprise.Apprise().add(url)
        except Exception:  # a plugin's parser that raises: the URL is not usable either
            known = False
        if not known:
            raise UsageError(
                f"--notify {shown(url)}/...: not a URL Apprise can send to (a mistyped "
                "scheme? see https://github.com/caronc/apprise/wiki); nothing was sent"
            )


def _load_apprise() -> None:
    """Apprise is imported only when a URL is given: it loads ~100 plugins."""
    import apprise  # noqa: F401

    for chatty in ("apprise", "urllib3"):  # their lines may hold a URL's token
        logging.getLogger(chatty).setLevel(logging.CRITICAL)


def _send(urls: Sequence[str], message: Message, warnings: list[str]) -> None:
    try:
        _send_each(urls, message, warnings)
    except Exception as exc:  # never an exception out of the thread: a warning
        warnings.append(f"notification failed: {type(exc).__name__}")


def _send_each(urls: Sequence[str], message: Message, warnings: list[str]) -> None:
    import apprise

    for url in urls:
        target = apprise.Apprise()
        if not target.add(url):
            warnings.append(f"notification URL {shown(url)} is not one Apprise knows")
            continue
        try:
            delivered = bool(target.notify(title=message.title, body=message.body))
        except Exception as exc:  # a plugin's bug must not end the run's report
            delivered, why = False, type(exc).__name__
        else:
            why = "the service refused it or did not answer"
        if not delivered:
            warnings.append(f"notification to {shown(url)} failed: {why}")


def summary_message(run_name: str, summary: dict[str, Any], stopped_by: str | None) -> Message:
    """The one message of a run: counts, causes, spend, time, report, the next step."""
    counts = summary.get("counts", {})
    total, succeeded = summary.get("total", 0), counts.get("succeeded", 0)
    head = f"stopped: {stopped_by}" if stopped_by else f"{succeeded}/{total} succeeded"
    lines = [", ".join(f"{n} {status}" for status, n in counts.items()) or "no tasks"]
    if summary.get("failures_by_class"):
        causes = ", ".join(f"{n} {c}" for c, n in summary["failures_by_class"].items())
        lines.append(f"failed by cause: {causes}")
    spend = f"spent ~ ${summary.get('spent_usd', 0):,.2f} (estimate)"
    if summary.get("measured_spend_usd") is not None:
        spend += f", the balance fell ${summary['measured_spend_usd']:,.2f}"
    lines.append(spend)
    if summary.get("elapsed_s") is not None:
        lines.append(f"took {summary['elapsed_s'] / 60:.1f} min")
    if summary.get("report"):
        lines.append(f"report: {summary['report']}")
    lines += [f"next: {step}" for step in summary.get("next_steps", [])]
    return Message(f"kling-batch {run_name}: {head}", "\n".join(lines))


def alert_message(run_name: str, what: str, todo: str) -> Message:
    """A run that stopped before its tasks could finish, and what to do."""
    return Message(f"kling-batch {run_name}: stopped: {what}", todo)


def test_message() -> Message:
    return Message("kling-batch: a test", "If you read this, the morning message will reach you.")


@dataclass(frozen=True)
class HookResult:
    exit_code: int | None  # None: it ran out of time
    tail: str  # the end of its output (stdout and stderr)


def run_on_finish(
    command: str,
    summary: dict[str, Any],
    run_dir: Path,
    exit_code: int,
    timeout_s: float = ON_FINISH_TIMEOUT_S,
) -> HookResult:
    """``--on-finish CMD``: run once with the summary as JSON on its standard input and
    ``KLING_BATCH_DIR`` / ``KLING_BATCH_EXIT`` in its environment (a shell command, as
    the user typed it)."""
    env = {**os.environ, "KLING_BATCH_DIR": str(run_dir), "KLING_BATCH_EXIT": str(exit_code)}
    try:
        # A session of its own: past the timeout the shell *and everything it started*
        # are stopped (killing the shell alone left its children running, holding the
        # pipes open).
        process = subprocess.Popen(
            command,
            shell=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as exc:
        return HookResult(127, str(exc))
    try:
        output, _ = process.communicate(json.dumps(summary, indent=2), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _stop_group(process)
        output, _ = process.communicate()
        return HookResult(None, (output or "")[-TAIL_CHARS:])
    return HookResult(process.returncode, (output or "")[-TAIL_CHARS:])


def _stop_group(process: subprocess.Popen[str]) -> None:
    """SIGTERM to the command's whole process group, then SIGKILL after a moment."""
    for signum, grace_s in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)
        try:
            process.wait(grace_s)
            # The shell is gone; its children may linger in the group: kill them too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            return
        except subprocess.TimeoutExpired:
            continue
