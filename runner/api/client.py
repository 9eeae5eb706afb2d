"""The Novita API over one aiohttp session: auth, timeouts, and error mapping.

This is the one place that decides what an answer means (design.md, after
openai-python's ``_base_client``): every failure leaves here as a typed error from
:mod:`runner.core.errors` whose ``retryable`` says whether trying again is safe. For a
submit, "safe" means the API provably created nothing; everything else that could have
created a task becomes :class:`SubmitOutcomeUnknown`.

aiohttp itself re-sends a request on a dropped keep-alive connection only for
idempotent methods (GET and friends), never for our POST, so no hidden retry can pay twice.

The API key goes only into the ``Authorization`` header of requests to the API's own
base URL; it is never put in an exception, a log line or a URL. Video downloads use a
different session that has no key at all (see ``runner.engine.fetch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from runner.api.answers import Probe, TaskResult, error_for, json_object, parse_task_result, snippet
from runner.core.errors import (
    ApiError,
    SubmitOutcomeUnknown,
    TransportError,
)
from runner.core.redact import scrub

log = logging.getLogger(__name__)

TASK_RESULT_PATH = "/v3/async/task-result"
DEFAULT_BASE_URL = "https://api.novita.ai"


@dataclass(frozen=True)
class Timeouts:
    """Seconds. A submit carries up to ~13 MB of base64, so it gets a longer total.

    A submit's deadline whose timer fires more than ``pause_late_s`` after it was due
    means the process was paused (Ctrl-Z then ``fg``, a suspended laptop or VM), not
    that the API was slow: the answer may be waiting in the socket, and the task is
    paid for. It gets ``pause_grace_s`` more to be read before the outcome is
    ``unknown``."""

    connect: float = 10.0
    submit_total: float = 120.0
    poll_total: float = 30.0
    pause_late_s: float = 5.0
    pause_grace_s: float = 10.0


class NovitaClient:
    """Async client for the two endpoints a batch needs: submit and task result."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeouts: Timeouts | None = None,
        max_connections: int = 32,
    ):
        if not api_key:
            raise ValueError("an API key is required")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.timeouts = timeouts or Timeouts()
        self._max_connections = max_connections
        self._result_url = f"{self.base_url}{TASK_RESULT_PATH}?task_id="
        # The submit's total is kept by _pause_aware_deadline, not aiohttp's own timer.
        self._submit_timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeouts.connect)
        self._poll_timeout = aiohttp.ClientTimeout(
            total=self.timeouts.poll_total, sock_connect=self.timeouts.connect
        )
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never show the key, even in a debugger or traceback
        return f"NovitaClient(base_url={self.base_url!r})"

    async def __aenter__(self) -> NovitaClient:
        connector = aiohttp.TCPConnector(limit=self._max_connections)
        self._session = aiohttp.ClientSession(connector=connector)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    async def submit(self, path: str, body: dict[str, Any]) -> str:
        """POST a task; returns its ``task_id``. See the module docstring for errors."""
        session = self._require_session()
        try:
            async with (
                _pause_aware_deadline(self.timeouts),
                session.post(
                    self.base_url + path,
                    json=body,
                    headers=self._headers,
                    timeout=self._submit_timeout,
                ) as resp,
            ):
                text = self._text(await resp.read())
                status, headers = resp.status, resp.headers
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise TransportError(
                f"could not connect to {self.base_url}: {_describe(exc)}"
            ) from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise SubmitOutcomeUnknown(f"sent, but no answer came back: {_describe(exc)}") from None
        if status == 200:
            task_id = json_object(text).get("task_id")
            if isinstance(task_id, str) and task_id:
                return task_id
            # 200 means the API took it; without an id we cannot follow or rule out a charge.
            raise SubmitOutcomeUnknown(f"HTTP 200 without a task_id: {text[:200]!r}")
        raise error_for(status, text, headers, submitting=True)

    async def task_result(self, task_id: str) -> TaskResult:
        session = self._require_session()
        # The URL is built by hand, already encoded: yarl's query building is the
        # costliest part of a poll, and a poll is the request a batch sends most.
        url = URL(self._result_url + quote(task_id, safe=""), encoded=True)
        try:
            async with session.get(url, headers=self._headers, timeout=self._poll_timeout) as resp:
                text = self._text(await resp.read())
                status, headers = resp.status, resp.headers
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransportError(f"no answer from {self.base_url}: {_describe(exc)}") from None
        if status == 200:
            return parse_task_result(task_id, json_object(text))
        raise error_for(status, text, headers, submitting=False)

    async def account(self, path: str) -> dict[str, Any]:
        """GET an account endpoint (the balance, the user): free, answers JSON. Raises
        :class:`TransportError` when nothing answers, a typed API error otherwise, and
        ``ApiError(200, "UNEXPECTED_ANSWER")`` for a 200 that is not a JSON object."""
        session = self._require_session()
        try:
            async with session.get(
                self.base_url + path, headers=self._headers, timeout=self._poll_timeout
            ) as resp:
                text = self._text(await resp.read())
                status, headers = resp.status, resp.headers
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransportError(_describe(exc)) from None  # the caller names the URL
        if status == 200:
            data = json_object(text)
            if not data:
                raise ApiError(200, "UNEXPECTED_ANSWER", snippet(text) or "an empty answer")
            return data
        raise error_for(status, text, headers, submitting=False)

    async def probe(self, path_and_query: str) -> Probe:
        """A GET of the API as it answers, whatever it answers (``doctor``'s free
        checks read the status, the headers, the body); :class:`TransportError` when
        nothing answers (a TLS failure says so)."""
        session = self._require_session()
        started = time.monotonic()
        try:
            async with session.get(
                self.base_url + path_and_query, headers=self._headers, timeout=self._poll_timeout
            ) as resp:
                text = self._text(await resp.read())
                return Probe(
                    resp.status,
                    {k.lower(): v for k, v in resp.headers.items()},
                    text,
                    time.monotonic() - started,
                )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransportError(f"no answer from {self.base_url}: {_describe(exc)}") from None

    def _text(self, body: bytes) -> str:
        """An answer's text with the key cut out, once, where it enters: an API (or a
        gateway) that quotes the key or the Authorization header in an error must not
        put it into a report, the ledger, a log or an alert."""
        return scrub(body.decode("utf-8", "replace"), (self._api_key,))

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use NovitaClient as 'async with NovitaClient(...) as client'")
        return self._session


@contextlib.asynccontextmanager
async def _pause_aware_deadline(timeouts: Timeouts) -> AsyncIterator[None]:
    """``asyncio.timeout(submit_total)``, except that a deadline whose timer fires far
    later than it was due (the process was paused) first gives what has arrived
    meanwhile ``pause_grace_s`` to be read, once: a paid task's answer sitting in the
    socket must not be thrown away as ``unknown``."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(None) as deadline:
        due = loop.time() + timeouts.submit_total
        extended = False
        timer: asyncio.TimerHandle | None = None

        def expire() -> None:
            nonlocal due, extended, timer
            now = loop.time()
            if not extended and now - due > timeouts.pause_late_s:
                log.warning("the process was paused for %.0fs; reading the answer", now - due)
                extended, due = True, now + timeouts.pause_grace_s
                timer = loop.call_at(due, expire)
                return
            deadline.reschedule(now)  # expire now: TimeoutError in the submit

        timer = loop.call_at(due, expire)
        try:
            yield
        finally:
            if timer is not None:
                timer.cancel()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
