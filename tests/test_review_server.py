"""``kling-batch review``'s server over a real socket: who may talk to it, what it
serves, judgements and edits written to the ledger, and a redo that pays exactly once
more for what was rejected, only as confirmed, only while nothing else holds the folder."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from runner.cli.commands import main
from runner.review.app import ReviewServer, start_review
from runner.review.guard import refusal
from runner.run.folder import RunFolder
from tests.conftest import FAST, runner_process
from tests.test_reruns import manifest  # noqa: F401  (the fixture)

TOKEN = "t0ken"
ORIGIN = "http://127.0.0.1:8123"
HOST = {"Host": "127.0.0.1:8123"}
WRITE = {**HOST, "Origin": ORIGIN, "Content-Type": "application/json"}

GUARD_TABLE = [
    # method, path, headers, refused with
    ("GET", "/t0ken/", HOST, None),
    ("GET", "/t0ken/files/videos/a.mp4", HOST, None),
    ("GET", "/", HOST, 404),
    ("GET", "/t0ke/", HOST, 404),
    ("GET", "/other/t0ken/", HOST, 404),
    ("GET", "/t0ken/", {"Host": "evil.example:8123"}, 403),  # DNS rebinding
    ("POST", "/t0ken/api/judge", WRITE, None),
    ("POST", "/t0ken/api/judge", {**WRITE, "Sec-Fetch-Site": "same-origin"}, None),
    ("POST", "/t0ken/api/judge", {**WRITE, "Origin": "http://evil.example"}, 403),
    ("POST", "/t0ken/api/judge", {**WRITE, "Origin": "null"}, 403),
    ("POST", "/t0ken/api/judge", {k: v for k, v in WRITE.items() if k != "Origin"}, 403),
    ("POST", "/t0ken/api/judge", {**WRITE, "Sec-Fetch-Site": "cross-site"}, 403),
    ("POST", "/t0ken/api/judge", {**WRITE, "Content-Type": "text/plain"}, 415),
    (
        "POST",
        "/t0ken/api/redo",
        {**WRITE, "Content-Type": "application/x-www-form-urlencoded"},
        415,
    ),
    ("POST", "/nope/api/redo", WRITE, 404),
]


@pytest.mark.parametrize(("method", "path", "headers", "refused"), GUARD_TABLE)
def test_who_may_talk_to_the_review(method, path, headers, refused):
    said = refusal(method, path, headers, TOKEN, ORIGIN)
    assert (said[0] if said else None) == refused


@pytest.fixture
def judged_run(manifest, threaded_sim, tmp_path) -> Path:  # noqa: F811
    run_dir = tmp_path / "run <i>night"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    return run_dir


async def until(condition, what: str, timeout_s: float = 30.0) -> None:
    """Wait for ``condition`` (checked every 20 ms), failing after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.02)


async def until_async(ask, good, what: str, timeout_s: float = 30.0):
    """Ask (a coroutine) until ``good`` holds of the answer; the answer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        answer = await ask()
        if good(answer):
            return answer
        assert loop.time() < deadline, f"gave up waiting for {what}: {answer}"
        await asyncio.sleep(0.05)


class Page:
    """The review as its page talks to it: its origin, its JSON."""

    def __init__(self, server: ReviewServer, session: aiohttp.ClientSession):
        self.server, self.session = server, session
        parts = urlsplit(server.url)
        self.origin = f"{parts.scheme}://{parts.netloc}"

    async def get(self, path: str) -> tuple[int, dict]:
        async with self.session.get(self.server.url + path) as answer:
            return answer.status, await answer.json()

    async def post(self, path: str, body: dict, **headers: str) -> tuple[int, dict]:
        sent = {"Origin": self.origin, **headers}
        async with self.session.post(self.server.url + path, json=body, headers=sent) as answer:
            return answer.status, await answer.json()


@pytest.fixture
async def page(judged_run):
    server = await start_review(judged_run)
    async with aiohttp.ClientSession() as session:
        yield Page(server, session)
    await server.close()


def ledger_reviews(run_dir: Path) -> list[tuple]:
    with sqlite3.connect(run_dir / "state.sqlite") as db:
        return db.execute(
            "SELECT task_key, verdict, note, edits FROM reviews ORDER BY 1"
        ).fetchall()


async def test_the_page_and_the_files_it_may_load(page, judged_run):
    async with page.session.get(page.server.url) as answer:
        html = await answer.text()
        assert answer.status == 200 and answer.headers["X-Frame-Options"] == "DENY"
    assert "run &lt;i&gt;night" in html and "<i>night" not in html  # autoescaped
    assert "NOVITA" not in html and "sk_" not in html
    status, found = await page.get("api/tasks")
    assert status == 200
    by_key = {card["key"]: card for card in found["cards"]}
    assert set(by_key) == {"one/1", "two/1", "three/1"}
    video = by_key["one/1"]["video"]
    async with page.session.get(page.server.url + video) as answer:
        assert answer.status == 200 and (await answer.read())[4:8] == b"ftyp"
    for hidden in (
        "files/state.sqlite",
        "files/run.log",
        "files/videos/../state.sqlite",
        "files/%2e%2e/state.sqlite",
        "files/images/../../etc/passwd",
    ):
        async with page.session.get(page.server.url + hidden) as answer:
            assert answer.status == 404, hidden
    bare = page.server.url.rsplit("/", 2)[0] + "/api/tasks"  # without the token
    async with page.session.get(bare) as answer:
        assert answer.status == 404


async def test_judgements_and_edits_reach_the_ledger_and_a_foreign_page_cannot_write(
    page, judged_run
):
    assert (await page.post("api/judge", {"key": "one/1", "verdict": "kept"}))[0] == 200
    status, found = await page.post("api/judge", {"key": "two/1", "note": "drifts left"})
    assert status == 200 and found["cards"][0]["note"] == "drifts left"
    status, _ = await page.post(
        "api/judge", {"key": "three/1", "verdict": "rejected"}, Origin="http://evil.example"
    )
    assert status == 403
    status, found = await page.post("api/edit", {"key": "two/1", "edits": {"duration": "7"}})
    assert status == 422
    assert any("row 'two': duration = '7'" in p for p in found["problems"])
    status, found = await page.post(
        "api/edit", {"key": "two/1", "edits": {"prompt": "second, calmer", "duration": "10"}}
    )
    assert status == 200 and found["redo"]["keys"] == ["two/1"] and found["redo"]["edited"] == 1
    assert ledger_reviews(judged_run) == [
        ("one/1", "kept", "", None),
        ("two/1", "rejected", "drifts left", '{"prompt": "second, calmer"}'),  # 10 was as is
    ]
    assert (await page.post("api/judge", {"key": "nope/1", "verdict": "kept"}))[0] == 400


async def test_a_redo_is_what_was_confirmed_paid_once_and_refused_while_the_folder_is_held(
    page, judged_run, threaded_sim
):
    await page.post("api/edit", {"key": "two/1", "edits": {"prompt": "second, calmer"}})
    await page.post("api/judge", {"key": "three/1", "verdict": "rejected"})
    _, found = await page.get("api/tasks")
    redo = found["redo"]
    assert redo["keys"] == ["three/1", "two/1"] and redo["edited"] == 1

    status, said = await page.post("api/redo", {"keys": redo["keys"], "usd": redo["usd"] - 0.35})
    assert status == 409 and "changed since it was shown" in said["error"]
    with RunFolder.existing(judged_run):  # a run holds the folder
        status, said = await page.post("api/redo", {"keys": redo["keys"], "usd": redo["usd"]})
    assert status == 409 and "in use" in said["error"]
    assert threaded_sim.stats.tasks_created == 3  # nothing was sent

    status, said = await page.post("api/redo", {"keys": redo["keys"], "usd": redo["usd"]})
    assert status == 202, said
    await page.server.review.redoing.task  # the night of the redo
    _, found = await page.get("api/tasks")
    assert found["redo_said"].startswith("redo finished: 2 sent")
    assert threaded_sim.stats.created_by_prompt == {
        "first": 1,
        "second": 1,
        "second, calmer": 1,
        "third": 2,
    }
    assert found["redo"]["keys"] == []  # the new takes are not judged yet


async def test_live_beside_a_running_night_and_a_second_review_reads_too(
    manifest,  # noqa: F811
    threaded_sim,
    tmp_path,
):
    """A run holds the folder (in its own process, its tasks held at the API): the
    review shows them in flight, writes its judgement beside the run, refuses a redo
    (the run holds the lock), and shows the videos as they arrive once they are made."""
    run_dir = tmp_path / "run"
    threaded_sim.hold()
    night = runner_process(
        ["run", str(manifest), "--out", str(run_dir), *FAST], threaded_sim, tmp_path
    )
    await until(lambda: (run_dir / "state.sqlite").is_file(), "the night's ledger")
    first, second = await start_review(run_dir), await start_review(run_dir)
    try:
        async with aiohttp.ClientSession() as session:
            page, other = Page(first, session), Page(second, session)

            async def statuses(since: float = 0.0) -> dict[str, str]:
                _, found = await page.get(f"api/tasks?since={since}")
                return {card["key"]: card["status"] for card in found["cards"]}

            await until_async(
                lambda: statuses(),
                lambda got: set(got.values()) <= {"queued", "processing"} and len(got) == 3,
                "three tasks in flight",
            )
            assert (await page.post("api/judge", {"key": "one/1", "note": "watch"}))[0] == 200
            status, found = await other.get("api/tasks")  # a second review of the folder
            assert (
                status == 200 and {c["key"]: c["note"] for c in found["cards"]}["one/1"] == "watch"
            )
            await page.post("api/judge", {"key": "two/1", "verdict": "rejected"})
            _, found = await page.get("api/tasks")  # rejected while at work: not redone
            assert found["redo"]["busy"] == ["two/1"] and found["redo"]["keys"] == []

            threaded_sim.release()
            _, found = await page.get("api/tasks")
            since = found["since"]
            await until_async(
                lambda: page.get(f"api/tasks?since={since}"),
                lambda got: sum(1 for c in got[1]["cards"] if c["video"]) == 3,
                "the three videos, as changes since the page last asked",
            )
    finally:
        await first.close()
        await second.close()
    assert night.wait(60) == 0
    assert threaded_sim.stats.tasks_created == 3


def test_the_command_prints_its_address_serves_and_stops_on_ctrl_c(judged_run, tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "runner", "review", str(judged_run)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stdout.readline()
        assert first.startswith(f"review of {judged_run}: http://127.0.0.1:")
        url = first.rsplit(": ", 1)[1].strip()
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert answer.status == 200 and b"<title>review" in answer.read()
        process.send_signal(signal.SIGINT)
        assert process.wait(20) == 0
    finally:
        process.kill()
        process.communicate()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_command_stops_even_started_with_ctrl_c_ignored(judged_run, tmp_path, signum):
    """A shell's background job (or a test runner's worker) starts it with SIGINT
    ignored: it stops all the same, on Ctrl-C or SIGTERM, with exit 0."""
    process = subprocess.Popen(
        [sys.executable, "-m", "runner", "review", str(judged_run)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        assert process.stdout.readline().startswith(f"review of {judged_run}: http://")
        process.send_signal(signum)
        assert process.wait(20) == 0
    finally:
        process.kill()
        process.communicate()
