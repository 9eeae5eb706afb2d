"""The simulator's server: the routes, the tasks' lives, and the videos they serve.

It is a real aiohttp server speaking the documented protocol (shared/novita-api.md):
``POST /v3/async/kling-v2.6-pro-i2v`` and ``GET /v3/async/task-result``, answering in
exactly the documented shapes (the official ``novita-client`` SDK parses them), with
bearer auth and the same input limits as the runner (both use the job contract, for
every model in ``jobs.MODELS``, each at its own path).
Finished videos are served by a *second* listener, as a pre-signed-style URL that
expires, the way Novita hands out object-store links.

Faults (scripts, outages, rates) are in ``faults``, the wire shapes in ``wire``, the
videos in ``video``, hosting (``kling-batch sim``, a thread) in ``hosting``.
The clock can be moved with :meth:`Simulator.advance`, so a test never has to sleep
through a generation.

Everything it saw is counted in :attr:`Simulator.stats` for tests to assert on.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import hmac
import json
import random
import time
import uuid
from collections import deque
from typing import Any

from aiohttp import web

from jobs import MODELS
from jobs.contract import Model
from runner.simulator.faults import Faults
from runner.simulator.readings import BAD_PIXELS, read_forms
from runner.simulator.state import SimConfig, SimStats, SimTask
from runner.simulator.video_host import VideoHost
from runner.simulator.wire import (
    BALANCE_PATH,
    TASK_RESULT_PATH,
    UNLIMITED_USD,
    USER_PATH,
    account_answer,
    account_fault,
    bad_gateway,
    check_body,
    drop,
    error_answer,
    task_result_answer,
)

__all__ = ["SimConfig", "Simulator"]


class Simulator:
    """The simulated API: ``async with Simulator(config) as sim: sim.base_url``."""

    def __init__(self, config: SimConfig | None = None):
        self.config = config or SimConfig()
        self.stats = SimStats()
        self.tasks: dict[str, SimTask] = {}
        self.held = False
        self.rng = random.Random(self.config.seed)
        self._offset = 0.0
        self._started_at = self.now()
        self.faults = Faults(self.config, self.stats, self.rng)
        self._windows: dict[str, deque[float]] = {"submit": deque(), "poll": deque()}
        self.videos = VideoHost(self)
        self._id_salt = uuid.uuid4().int
        self._stopping = asyncio.Event()
        self._answers_released = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runners: list[web.AppRunner] = []
        self.base_url = ""
        self.media_url = ""

    # --- controls for tests ---------------------------------------------------------

    def now(self) -> float:
        return time.monotonic() + self._offset

    def wall_now(self) -> float:
        """The wall clock, moved by :meth:`advance` like :meth:`now`: what links are
        signed with (an object store signs with the date, not a monotonic clock)."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the simulated clock forward: tasks progress without anyone sleeping."""
        self._offset += seconds

    def script(self, endpoint: str, *faults: str) -> None:
        """Make the next requests to ``endpoint`` (submit, poll, media) fail in order."""
        self.faults.script(endpoint, *faults)

    def script_fates(self, *fates: str) -> None:
        """Decide the fate of the next tasks created (succeed, fail, stall)."""
        self.faults.script_fates(*fates)

    def adopt(self, task_id: str, request_json: str) -> None:
        """Know a task created by an earlier simulator (an embedded one dies with its
        process), as if just created, so a resumed rehearsal can finish it. Not
        counted as created: nobody paid for it here."""
        if task_id in self.tasks:
            return
        request = json.loads(request_json)
        self.tasks[task_id] = SimTask(
            task_id=task_id,
            prompt=request.get("prompt", ""),
            request={k: v for k, v in request.items() if k != "image"},
            created_at=self.now(),
            created_wall=time.time(),
            queue_s=self.config.queue_s,
            generation_s=self.config.generation_s,
            fate="succeed",
        )

    def release_answers(self) -> None:
        """Let submits held by a ``hold_after_create`` fault answer. Safe to call from
        another thread (the tests drive a threaded simulator from theirs)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._answers_released.set)

    def hold(self) -> None:
        """Keep every task QUEUED (no eta) until :meth:`release`."""
        self.held = True

    def release(self) -> None:
        self.held = False

    def outage(self, endpoint: str, on: bool = True) -> None:
        """Answer every request to ``endpoint`` (submit, poll) with 503 until turned off:
        Novita's side down, or the laptop's network, for as long as a test needs."""
        self.faults.outage(endpoint, on)

    # --- lifecycle --------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0, media_port: int = 0) -> Simulator:
        self._loop = asyncio.get_running_loop()
        api = web.Application(client_max_size=32 * 1024 * 1024)
        api.on_response_prepare.append(self._stamp_headers)
        for model in MODELS.values():  # every model's path, each with its own contract
            api.router.add_post(model.path, functools.partial(self._submit, model=model))
        api.router.add_get(TASK_RESULT_PATH, self._task_result)
        api.router.add_get(BALANCE_PATH, self._balance_detail)
        api.router.add_get(USER_PATH, self._user)
        api.router.add_get("/_sim/stats", self._stats)
        api.router.add_get("/_sim/tasks", self._task_timings)
        media = web.Application()
        media.router.add_get("/videos/{name}", self.videos.serve)
        self.base_url = await self._serve(api, host, port)
        self.media_url = await self._serve(media, host, media_port)
        self.videos.url = self.media_url
        return self

    async def _serve(self, app: web.Application, host: str, port: int) -> str:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runners.append(runner)
        bound_host, bound_port = runner.addresses[0][:2]
        return f"http://{bound_host}:{bound_port}"

    async def stop(self) -> None:
        self._stopping.set()
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

    async def __aenter__(self) -> Simulator:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- handlers -----------------------------------------------------------------------

    async def _submit(self, request: web.Request, model: Model) -> web.StreamResponse:
        self.stats.submits += 1
        refused = self._check_auth(request) or self._check_rate("submit")
        if refused is not None:
            return refused
        fault = self.next_fault("submit")
        answer = self._answer_before_work("submit", fault)
        if answer is not None:
            return answer
        if fault == "replay_answer" and self.tasks:  # a gateway's cached answer
            return web.json_response({"task_id": next(reversed(self.tasks))})
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return self._reject("INVALID_REQUEST_BODY", "body is not JSON")
        if not isinstance(body, dict):
            return self._reject("INVALID_REQUEST_BODY", "body: must be a JSON object")
        read = read_forms(model, body, self.config.readings)
        checked, problem = (None, read.problem) if read.problem else check_body(model, read.body)
        if problem is not None:
            return self._reject(problem.code, f"{problem.field}: {problem.rule}", request)
        assert checked is not None  # no problem: the body is a request
        if _holds_any(str(body.get("prompt", "")), self.config.refuse_prompt_words):
            return self._reject("ILLEGAL_PROMPT", "the prompt contains sensitive content", request)
        price = checked.estimate()
        if self.config.balance_usd is not None:  # the cash, then the credit line
            if self.config.balance_usd + self.config.credit_usd < price:
                return self._reject("BILLING_BALANCE_NOT_ENOUGH", "balance not enough")
            self.config.balance_usd -= price
        task = self._create(read.body, model.name)
        if read.bare_first_frame and self.config.readings.image == "raw-fails":
            task.fate, task.reason = "fail", BAD_PIXELS  # billed, then failed for its picture
        return await self._answer_after_create(request, task, fault)

    async def _answer_after_create(
        self, request: web.Request, task: SimTask, fault: str | None
    ) -> web.StreamResponse:
        """The answer to a submit whose task was made (and billed): its id, or a fault
        that hides it (a gateway's page, a 500, a dropped or held connection)."""
        if fault == "502_html":
            return bad_gateway()
        if fault == "500_after_create":
            reason = self.config.after_create_500_reason
            return error_answer(500, reason, "internal error, please retry")
        if fault == "drop_after_create":
            return await drop(request)
        if fault == "hang_after_create":
            await self._stopping.wait()
            return await drop(request)
        if fault == "hold_after_create":
            await self._answers_released.wait()
        return web.json_response({"task_id": task.task_id})

    async def _task_result(self, request: web.Request) -> web.StreamResponse:
        self.stats.polls += 1
        refused = self._check_auth(request) or self._check_rate("poll")
        if refused is not None:
            return refused
        fault = self.next_fault("poll")
        answer = self._answer_before_work("poll", fault)
        if answer is not None:
            return answer
        if fault == "502_html":
            return bad_gateway()
        if fault == "drop":
            return await drop(request)
        task = self.tasks.get(request.query.get("task_id", ""))
        if task is not None:
            self.stats.polls_by_task[task.task_id] += 1
        lagging = task is not None and (
            self.stats.polls_by_task[task.task_id] <= self.config.result_lag_polls
            or self.now() - task.created_at < self.config.result_lag_s
        )
        if task is None or fault == "404" or lagging:
            return error_answer(404, "TASK_NOT_FOUND", "task not found")
        return web.json_response(self._result(task))

    async def _balance_detail(self, request: web.Request) -> web.Response:
        return self._account(request, "balance")

    async def _user(self, request: web.Request) -> web.Response:
        return self._account(request, "user")

    def _account(self, request: web.Request, endpoint: str) -> web.Response:
        """Both account endpoints: the balance, or the configured way of failing."""
        self.stats.account_requests += 1
        refused = self._check_auth(request) or account_fault(self.config.account_answer)
        usd = UNLIMITED_USD if self.config.balance_usd is None else self.config.balance_usd
        return refused or account_answer(endpoint, usd, self.config.credit_usd)

    def sent_image(self, task_id: str) -> bytes | None:
        """The first frame a task was sent, as the API got it (``VideoHost.sent_image``)."""
        return self.videos.sent_image(task_id)

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.as_dict())

    async def _task_timings(self, request: web.Request) -> web.Response:
        """Per task, in creation order (simulator clock, seconds): when it was created,
        when it was done, and when a poll first saw it done. What a benchmark needs to
        compute the ideal makespan and the runner's detection delay."""
        return web.json_response(
            [
                {
                    "task_id": t.task_id,
                    "created_at": t.created_at,
                    "done_at": t.done_at,
                    "seen_done_at": t.finished_seen_at,
                    "fate": t.fate,
                }
                for t in self.tasks.values()
            ]
        )

    # --- behaviour ----------------------------------------------------------------------

    async def _stamp_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        """The API's own headers: its clock (``date_skew_s`` moves it), and rate-limit
        headers when told to send them (none are documented)."""
        if self.config.date_skew_s:
            when = time.time() + self.config.date_skew_s
            response.headers["Date"] = email.utils.formatdate(when, usegmt=True)
        if self.config.rate_limit_headers and self.config.submit_limit:
            response.headers["X-RateLimit-Limit"] = str(self.config.submit_limit)
            response.headers["X-RateLimit-Window"] = f"{self.config.limit_window_s:g}s"

    def _check_auth(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or not header[7:].strip():
            self.stats.rejected["MISSING_API_KEY"] += 1
            return error_answer(400, "MISSING_API_KEY", "missing api key")
        if not hmac.compare_digest(header[7:].strip(), self.config.api_key):
            self.stats.rejected["INVALID_API_KEY"] += 1
            return error_answer(
                self.config.auth_failure_status,
                "INVALID_API_KEY",
                "invalid api key" + self._quoted(request),
            )
        return None

    def _check_rate(self, endpoint: str) -> web.Response | None:
        limit = self.config.submit_limit if endpoint == "submit" else self.config.poll_limit
        if limit is None:
            return None
        window, now = self._windows[endpoint], self.now()
        while window and window[0] <= now - self.config.limit_window_s:
            window.popleft()
        if len(window) >= limit:
            wait = window[0] + self.config.limit_window_s - now
            return self._too_many(endpoint, retry_after=max(1, int(wait + 0.999)))
        window.append(now)
        return None

    def _answer_before_work(self, endpoint: str, fault: str | None) -> web.Response | None:
        """Faults answered before anything is done: nothing is created by these."""
        if fault == "429":
            return self._too_many(endpoint, retry_after=self.config.retry_after_s)
        if fault == "500":
            reason = "CREATE_TASK_FAILED" if endpoint == "submit" else "GET_RESULT_FAILED"
            return error_answer(500, reason, "the request failed, please retry")
        if fault == "503":
            return error_answer(503, "SERVICE_UNAVAILABLE", "service temporarily unavailable")
        return None

    def _too_many(self, endpoint: str, retry_after: int) -> web.Response:
        self.stats.rate_limited[endpoint] += 1
        response = error_answer(429, "RATE_LIMIT_EXCEEDED", "rate limit exceeded")
        response.headers["Retry-After"] = str(retry_after)
        return response

    def next_fault(self, endpoint: str) -> str | None:
        return self.faults.next(endpoint, self.now() - self._started_at)

    def _reject(
        self, reason: str, message: str, request: web.Request | None = None
    ) -> web.Response:
        self.stats.rejected[reason] += 1
        return error_answer(400, reason, message + self._quoted(request))

    def _quoted(self, request: web.Request | None) -> str:
        """``quote_key_in_errors``: an error that echoes the request's Authorization
        header, as careless gateways and debug modes do."""
        if not self.config.quote_key_in_errors or request is None:
            return ""
        return f" (request: Authorization: {request.headers.get('Authorization', '')})"

    def _create(self, body: dict[str, Any], model: str) -> SimTask:
        fate = self.faults.next_fate()
        prompt = str(body.get("prompt", "")).lower()
        fate = next((f for w, f in self.config.prompt_fates.items() if w.lower() in prompt), fate)
        task = SimTask.new(body, self.config, self.rng, fate, self.now(), model, self._id_salt)
        task.image_digest = self.videos.keep_image(body.get("image"))
        self.tasks[task.task_id] = task
        self.stats.tasks_created += 1
        self.stats.created_by_prompt[task.prompt] += 1
        self.stats.created_by_model[model] += 1
        return task

    def _result(self, task: SimTask) -> dict[str, Any]:
        """A Task Result answer in exactly the documented shape."""
        status, progress, eta, reason = task.state_at(self.now(), self.held, self.config)
        videos = [self.videos.entry(task)] if status == "TASK_STATUS_SUCCEED" else []
        eta_s = int(eta + 0.999) if self.config.report_eta else 0
        return task_result_answer(task, status, reason, eta_s, min(progress, 100), videos)


def _holds_any(text: str, words: tuple[str, ...]) -> bool:
    lowered = text.lower()
    return any(word.lower() in lowered for word in words)
