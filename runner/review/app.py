"""``kling-batch review DIR``: the run as a local page to judge, edit and redo from.

An aiohttp app on 127.0.0.1 at a random port, behind a random token (``guard``). It
reads the ledger on every ask and writes only judgements (``Judging``), so it is safe
beside a live run; its redo is the library's (``redo_rejected``), on a thread of its
own, which takes the run folder's lock: two spends at once, from two pages or a page
and a terminal, are refused by the lock, not by luck. The API key is read by the redo
from the environment and never reaches the page.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from jobs import request_from_json
from runner.core.errors import KlingBatchError, RunFolderError
from runner.core.records import Verdict
from runner.ledger.reviews import Judging
from runner.manifest.redo import revised
from runner.reports.templates import PAGES
from runner.review.guard import guard
from runner.review.view import cards, editable, snapshot
from runner.run.library import RedoChanged, redo_rejected
from runner.run.redo import RedoEstimate, rejected_redo

FILTERS = ("all", "unjudged", "kept", "rejected", "succeeded", "failed", "pending", "processing")
SHORTCUTS = (
    (("j", "→"), "next task"),
    (("k", "←"), "previous task"),
    (("a",), "keep it"),
    (("x",), "reject it"),
    (("u",), "unjudge it"),
    (("n",), "write a note (Enter saves)"),
    (("e",), "edit its prompt and settings (for the redo)"),
    (("space",), "play or pause its video"),
    (("/",), "search"),
    (("?",), "this list"),
    (("Esc",), "leave a text box"),
)
# What the page may load from the run folder: pictures and videos, never the ledger,
# the log or the lock.
SERVED = (Path("videos"), Path("images"), Path(".thumbs"))
REFRESH_MS = 2000


@dataclass
class Redoing:
    """The redo the page started, and how it ended (said on the page)."""

    task: asyncio.Task[None] | None = None
    said: str = ""


@dataclass
class Review:
    run_dir: Path
    ledger: Judging
    env: Mapping[str, str]
    options: Mapping[str, Any]
    redoing: Redoing = field(default_factory=Redoing)

    async def page(self, request: web.Request) -> web.Response:
        html = PAGES.get_template("review.html").render(
            run_name=self.run_dir.name,
            filters=FILTERS,
            shortcuts=SHORTCUTS,
            refresh_ms=REFRESH_MS,
        )
        return web.Response(text=html, content_type="text/html")

    async def tasks(self, request: web.Request) -> web.Response:
        try:
            since = float(request.query.get("since", "0"))
        except ValueError:
            since = 0.0
        found = snapshot(self.ledger, self.run_dir, since)
        found["running"] = self.redoing.task is not None and not self.redoing.task.done()
        found["redo_said"] = self.redoing.said
        return web.json_response(found)

    async def judge(self, request: web.Request) -> web.Response:
        body = await _json(request)
        key = _key(body)
        parts: dict[str, Any] = {}
        if "verdict" in body:
            verdict = body["verdict"]
            if verdict not in (None, *(str(v) for v in Verdict)):
                raise _bad(f"a verdict is kept, rejected or null, not {verdict!r}")
            parts["verdict"] = Verdict(verdict) if verdict else None
        if "note" in body:
            if not isinstance(body["note"], str):
                raise _bad("a note is text")
            parts["note"] = body["note"]
        self._judge(key, **parts)
        return self._after(key)

    async def edit(self, request: web.Request) -> web.Response:
        """Check the edits as a manifest row would be; keep them (and reject the task)
        only when they can be sent."""
        body = await _json(request)
        key = _key(body)
        asked = body.get("edits")
        if not isinstance(asked, dict):
            raise _bad("edits are {setting: value}")
        record = self.ledger.get(key)
        current = request_from_json(record.request_json).values
        edits = {
            name: value
            for name, value in asked.items()
            if value not in ("", None) and not _unchanged(value, current.get(name))
        }
        made = revised(record, edits)
        if isinstance(made, list):
            problems = [str(p) for p in made]
            return web.json_response(
                {"error": "; ".join(problems), "problems": problems}, status=422
            )
        self._judge(key, verdict=Verdict.REJECTED, edits=edits)
        return self._after(key)

    async def redo(self, request: web.Request) -> web.Response:
        """Start the redo the person confirmed: exactly the keys and dollars they saw."""
        body = await _json(request)
        keys, usd = body.get("keys"), body.get("usd")
        if not isinstance(keys, list) or not isinstance(usd, int | float):
            raise _bad("a redo names the keys and the dollars it was shown")
        if self.redoing.task is not None and not self.redoing.task.done():
            return web.json_response({"error": "a redo is running already"}, status=409)
        shown = rejected_redo(self.ledger).estimate
        expect = RedoEstimate(tuple(sorted(map(str, keys))), round(float(usd), 2), shown.edited)
        if shown != expect:
            return web.json_response({"error": str(RedoChanged(expect, shown))}, status=409)
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()

        def begin() -> None:
            if not started.done():
                started.set_result(None)

        def on_start() -> None:  # on the redo's thread, once it holds the folder
            loop.call_soon_threadsafe(begin)

        task = asyncio.create_task(self._redo(expect, on_start))
        self.redoing = Redoing(task)
        await asyncio.wait({started, task}, return_when=asyncio.FIRST_COMPLETED)
        if not started.done():  # refused before anything was sent: the lock, a change
            return web.json_response({"error": self.redoing.said}, status=409)
        said = f"redo started: {len(expect.keys)} task(s), estimated ${expect.usd:.2f}"
        return web.json_response({"said": said}, status=202)

    async def _redo(self, expect: RedoEstimate, on_start: Callable[[], None]) -> None:
        """The redo on a thread of its own; how it ended is said on the page."""
        try:
            result = await asyncio.to_thread(
                redo_rejected,
                self.run_dir,
                expect=expect,
                env=self.env,
                on_start=on_start,
                **self.options,
            )
        except KlingBatchError as exc:
            self.redoing.said = f"redo not done: {exc}"
            return
        counts = ", ".join(f"{n} {s}" for s, n in sorted(result.counts.items()))
        self.redoing.said = f"redo finished: {result.created} sent ({counts})"

    async def files(self, request: web.Request) -> web.StreamResponse:
        wanted = Path(request.match_info["tail"])
        if (
            wanted.is_absolute()
            or ".." in wanted.parts
            or not any(wanted.is_relative_to(allowed) for allowed in SERVED)
        ):
            raise web.HTTPNotFound()
        path = self.run_dir / wanted
        if not path.is_file() or not path.resolve().is_relative_to(self.run_dir.resolve()):
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    def _after(self, key: str) -> web.Response:
        """The counts and the redo as they are now, and the card just changed (the
        page's own ``since`` stays: other cards come with its next ask)."""
        found = snapshot(self.ledger, self.run_dir, math.inf)
        found["cards"] = cards([self.ledger.get(key)], self.ledger.reviews(), self.run_dir)
        found["editable"] = editable(card["model"] for card in found["cards"])
        found["since"] = 0.0
        return web.json_response(found)

    def _judge(self, key: str, **parts: Any) -> None:
        try:
            self.ledger.judge(key, **parts)
        except KeyError:
            raise _bad(f"no such task: {key}") from None


@dataclass
class ReviewServer:
    url: str
    runner: web.AppRunner
    review: Review

    async def close(self) -> None:
        task = self.review.redoing.task
        if task is not None and not task.done():
            await asyncio.wait({task})  # a redo in flight finishes its night
        await self.runner.cleanup()
        self.review.ledger.close()


async def start_review(
    run_dir: Path,
    *,
    port: int = 0,
    env: Mapping[str, str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> ReviewServer:
    """Serve ``run_dir``'s review on 127.0.0.1 (``port`` 0: any free one); the URL
    returned holds the token. ``options``: the redo's spending options."""
    if not (run_dir / "state.sqlite").is_file():
        raise RunFolderError(f"{run_dir} is not a run folder (no state.sqlite)")
    token = secrets.token_urlsafe(24)
    review = Review(run_dir, Judging.open(run_dir), env or os.environ, options or {})
    origin = ""
    app = web.Application(middlewares=[guard(token, lambda: origin)], client_max_size=1 << 20)
    app.add_routes(
        [
            web.get(f"/{token}/", review.page),
            web.get(f"/{token}/api/tasks", review.tasks),
            web.post(f"/{token}/api/judge", review.judge),
            web.post(f"/{token}/api/edit", review.edit),
            web.post(f"/{token}/api/redo", review.redo),
            web.get(f"/{token}/files/{{tail:.+}}", review.files),
        ]
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]
    origin = f"http://127.0.0.1:{bound}"
    return ReviewServer(f"{origin}/{token}/", runner, review)


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _bad("the body is not JSON") from None
    if not isinstance(body, dict):
        raise _bad("the body is a JSON object")
    return body


def _key(body: Mapping[str, Any]) -> str:
    key = body.get("key")
    if not isinstance(key, str) or not key:
        raise _bad("which task? (key)")
    return key


def _unchanged(asked: object, current: object) -> bool:
    """A text box gives back what it was shown (``false``, ``10``): not an edit."""
    if isinstance(current, bool):
        return str(asked).strip().lower() == str(current).lower()
    return str(asked).strip() == ("" if current is None else str(current))


def _bad(reason: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": reason}), content_type="application/json")
