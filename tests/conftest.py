"""Shared fixtures: real images drawn with Pillow, and the simulator on an ephemeral port."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from PIL import Image

from runner.core.rates import Rate
from runner.engine.canary import CanaryMode
from runner.engine.poll_timing import PollPolicy
from runner.engine.wiring import EngineConfig
from runner.simulator import SimConfig, Simulator, simulator_in_thread

# The pictures' check cache (runner.media.picture_pool) of this test session, never the user's;
# set before any test, so that the processes the tests start inherit it.
os.environ.setdefault("KLING_BATCH_CACHE", tempfile.mkdtemp(prefix="kling-batch-test-cache-"))
SIM_KEY = "sk_test_5f1e9c2a7b3d4e6f"  # a recognisable key, so tests can grep for leaks
# CLI options that scale a run from minutes down to a test's fraction of a second. No
# canary: each test stages its own first contact (the canary's tests use CANARY_FAST).
CANARY_FAST = ["--yes", "--submit-rate", "100/s", "--poll-rate", "100/s", "--first-poll-s", "0.05"]
FAST = [*CANARY_FAST, "--canary", "off"]


def draw_image(path: Path, width: int = 640, height: int = 360, fmt: str | None = None) -> Path:
    """A real image file of the given size; the format follows the suffix unless given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (200, 120, 40)).save(path, format=fmt)
    return path


def write_rows(path: Path, count: int, image: str = "frame.png") -> Path:
    """A YAML manifest of ``count`` silent rows ``r0 .. r{count-1}``, one prompt each
    (``prompt i``, so the simulator's books count each row's tasks)."""
    rows = "\n".join(
        f"  - {{id: r{i}, image: {image}, prompt: 'prompt {i}'}}" for i in range(count)
    )
    path.write_text(f"defaults: {{sound: false}}\nrows:\n{rows}\n", encoding="utf-8")
    return path


@pytest.fixture
def image(tmp_path: Path) -> Callable[..., Path]:
    def make(
        name: str = "frame.png", width: int = 640, height: int = 360, fmt: str | None = None
    ) -> Path:
        return draw_image(tmp_path / name, width, height, fmt)

    return make


@pytest.fixture
async def start_sim() -> AsyncIterator[Callable[..., Simulator]]:
    """Start simulators with a given config; all are stopped after the test."""
    started: list[Simulator] = []

    async def start(**overrides) -> Simulator:
        config = SimConfig(api_key=SIM_KEY, queue_s=0.05, generation_s=0.1, jitter=0.0, **overrides)
        sim = await Simulator(config).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        await sim.stop()


@pytest.fixture
async def sim(start_sim) -> Simulator:
    return await start_sim()


def fast_engine_config(**overrides) -> EngineConfig:
    """Rates and poll intervals scaled down from minutes to a test's milliseconds, no
    canary (each test stages its own tasks)."""
    values = dict(
        submit_rate=Rate(200, 1),
        poll_rate=Rate(500, 1),
        poll_policy=PollPolicy(first_poll_s=0.02, min_interval_s=0.02, max_interval_s=0.2),
        progress_every_s=60.0,
        retry_base_s=0.02,
        canary=CanaryMode.OFF,  # the canary's own tests turn it on
    )
    values.update(overrides)
    return EngineConfig(**values)


def ledger_statuses(run_dir: Path) -> dict[str, str]:
    """Each task's status in a run folder's ledger, read as another process may be
    writing it ({} before the ledger exists)."""
    try:
        with sqlite3.connect(f"file:{run_dir / 'state.sqlite'}?mode=ro", uri=True) as db:
            return dict(db.execute("SELECT task_key, status FROM tasks"))
    except sqlite3.OperationalError:
        return {}


def wait_until(condition: Callable[[], object], timeout_s: float = 20.0, what: str = "") -> None:
    """Wait for a condition another process or thread makes true (not a fixed sleep:
    the test moves on the moment it holds, and fails loudly if it never does)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or condition}")
        time.sleep(0.005)


def runner_process(
    args: list[str],
    sim: Simulator,
    cwd: Path,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.Popen[str]:
    """``kling-batch ARGS`` as a separate process pointed at ``sim``: a process the test
    can interrupt or kill -9, as a user's shell or the OOM killer would.
    ``preexec_fn`` sets the child's limits (e.g. how much it may write)."""
    env = {**os.environ, "NOVITA_BASE_URL": sim.base_url, "NOVITA_API_KEY": SIM_KEY}
    process = subprocess.Popen(
        [sys.executable, "-m", "runner", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec_fn,
    )
    _started.append(process)
    return process


_started: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _a_cache_of_its_own(tmp_path_factory, monkeypatch) -> None:
    """Each test its own user cache (what was learned of an API is kept by base URL, and
    a port one test's simulator used may be another's next), for the processes it
    starts too."""
    monkeypatch.setenv("KLING_BATCH_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test() -> Iterator[None]:
    """Every runner process a test started is ended and its pipes closed after it,
    however the test went (a killed process's pipes would otherwise leak)."""
    yield
    while _started:
        process = _started.pop()
        if process.poll() is None:
            process.kill()
        process.communicate()


@pytest.fixture
def threaded_sim(monkeypatch) -> Iterator[Simulator]:
    """A simulator on its own thread, with the environment pointing the CLI at it."""
    with simulator_in_thread(
        SimConfig(api_key=SIM_KEY, queue_s=0.05, generation_s=0.1, jitter=0)
    ) as sim:
        monkeypatch.setenv("NOVITA_BASE_URL", sim.base_url)
        monkeypatch.setenv("NOVITA_API_KEY", SIM_KEY)
        yield sim


@pytest.fixture
def quick_rehearsal(monkeypatch) -> None:
    """``run --simulate`` with tasks that take a tenth of a second, not three."""
    monkeypatch.setattr(
        "runner.run.rehearsal.EMBEDDED_SIM_TIMES", {"queue_s": 0.05, "generation_s": 0.1}
    )


TOKEN = "tok-9f3a7c2e5b1d"  # a notify URL's recognisable secret: the tests grep for it


class Receiver:
    """An HTTP server on an ephemeral port that keeps every JSON body posted to it."""

    def __init__(self) -> None:
        received: list[dict] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                received.append({"path": self.path, **json.loads(self.rfile.read(length))})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server.server_port}/{TOKEN}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    found.thread.start()
    yield found
    found.server.shutdown()
    found.server.server_close()
