"""``make bench``: kling-batch against the simulator, beside the script a user would write.

Each side runs in its own process, and the simulator in a third, so that CPU and
memory are the runner's own and the simulator's work does not share its core.

What it runs (``--scenario`` picks some; every figure is printed with its target):
1. Four scenarios (``SCENARIOS``), each kling-batch's engine and then the script a user
   would write with the official ``novita-client`` SDK (``_post``, ``wait_for_task_v3``
   polling every 0.5 s, a download, in a thread pool), on the same simulator settings:
   ``default`` (2,000 tasks at 100/s, log-normal task times), ``eta`` and ``no-eta``
   (the speed issue's two tables) and ``big-videos`` (20 MB videos finishing at 10/s).
   Per side: makespan against the ideal bound, videos written whole, 429s, polls per
   task, the delay between a task finishing on the server and a poll seeing it, CPU per
   task, peak RSS, and (ours) how late polls went out against when they were due.
2. kling-batch on 20,000 tasks at 400/s: CPU per task and peak RSS, the figures that
   decide whether a laptop can hold a big batch.
3. The parts of one task alone, one at a time (a submit, a poll, a download with its
   fsync, the ledger's two durable commits): the floor under CPU per task.
4. Pictures out: a run of 500 tasks with the simulator's real videos, its contact sheet
   (and the same sheet with every video a 1080p 10 s file), a 1080p poster, a box check.
5. Images in: ``validate`` of a folder of 500 12 MP JPEGs and of 10,000 small PNGs,
   against one decode per file divided among the cores.
6. ``validate`` of a 100,000-row CSV manifest (wall time).

The ideal bound: task *i* (in the order the API created them) cannot be done before
``i / rate + d_i``, where ``d_i`` is its own queue + generation time on the simulator;
the ideal makespan is the largest of those. No runner can beat it at that rate.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import multiprocessing.util
import os
import resource
import shutil
import statistics
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image

from jobs import DEFAULT_MODEL, model_named
from jobs.images import image_payload
from runner.api.client import NovitaClient
from runner.core.rates import Rate
from runner.engine.canary import CanaryMode
from runner.engine.fetch import download
from runner.engine.poll_timing import PollPolicy
from runner.engine.wiring import EngineConfig, run_engine
from runner.ledger.transitions import RunState
from runner.manifest.files import load
from runner.manifest.plan import Plan, plan
from runner.media.frames import FRAMES_DIR
from runner.media.mp4 import check_mp4
from runner.media.sidecars import write_poster
from runner.reports.sheet import write_contact_sheet
from runner.simulator import SimConfig, Simulator

SUBMIT_PATH = model_named(DEFAULT_MODEL).path
KEY = "sk_bench_7c1d"
WINDOW_S = 10.0


# --- processes -------------------------------------------------------------------------


def _serve_simulator(config: SimConfig, conn: Any) -> None:
    async def serve() -> None:
        sim = await Simulator(config).start()
        conn.send(sim.base_url)
        await asyncio.Event().wait()

    asyncio.run(serve())


class SimulatorProcess:
    """The simulator in a process of its own, for the length of a ``with`` block."""

    def __init__(self, config: SimConfig):
        self.config = config

    def __enter__(self) -> SimulatorProcess:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve_simulator, args=(self.config, child), daemon=True)
        self.process.start()
        self.base_url = parent.recv()
        return self

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base_url + path, timeout=60) as answer:
            return json.loads(answer.read())

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.join(10)


def _in_process(target: Callable[..., dict], *args: Any) -> dict:
    """Run ``target(*args)`` in a fresh process and return its result dict."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_call, args=(target, args, child))
    process.start()
    result = parent.recv()
    process.join()
    return result


def _call(target: Callable[..., dict], args: tuple, conn: Any) -> None:
    """Every folder the side makes goes under one scratch folder, removed at its end
    (a big-videos run writes gigabytes)."""
    multiprocessing.util.get_temp_dir()  # a pool's own, made before: it outlives the scratch
    with tempfile.TemporaryDirectory(prefix="kling-bench-") as scratch:
        tempfile.tempdir = scratch
        conn.send(target(*args))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class TreeRss:
    """The peak of the resident memory of this process and all its descendants summed,
    sampled every 20 ms: a picture pool's workers are its fork server's children, which
    ``getrusage`` does not count (Linux: read from /proc)."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self.peak_mb = max(self.peak_mb, sum(map(_rss_mb, _descendants(os.getpid()))))


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, todo = [root], [root]
    while todo:
        parent = todo.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        todo += children
    return found


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _workdir(tasks: int) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="kling-bench-"))
    Image.new("RGB", (640, 360), (200, 120, 40)).save(folder / "frame.png")
    lines = [f"r{i},frame.png,bench shot {i},false" for i in range(tasks)]
    (folder / "batch.csv").write_text("id,image,prompt,sound\n" + "\n".join(lines) + "\n")
    return folder


def run_quick_night(base_url: str, state: RunState, run_dir: Path) -> None:
    """The engine over ``state``'s pending tasks with limits out of the way (no canary,
    a first look after 0.2 s): a night whose output a benchmark then measures."""
    config = EngineConfig(
        submit_rate=Rate(1000, 1),
        poll_rate=Rate(1000, 1),
        poll_policy=PollPolicy(first_poll_s=0.2),
        progress_every_s=3600,
        canary=CanaryMode.OFF,
    )

    async def night() -> None:
        async with NovitaClient(base_url, KEY) as client:
            await run_engine(state, client, run_dir, config)

    asyncio.run(night())


def _planned_run(tasks: int) -> tuple[Path, Plan, RunState]:
    """A fresh manifest of ``tasks`` rows, planned into a fresh ledger."""
    folder = _workdir(tasks)
    planned = plan(load(folder / "batch.csv"))
    state = RunState.open(folder / "run")
    state.sync_plan(planned.tasks)
    return folder, planned, state


# --- the two runners -------------------------------------------------------------------


def kling_batch_side(base_url: str, tasks: int, rate: float, poll_rate: float) -> dict:
    """kling-batch's engine on a fresh run folder; CPU counted from after start-up."""
    folder, _, state = _planned_run(tasks)
    config = EngineConfig(
        submit_rate=Rate(rate, 1),
        poll_rate=Rate(poll_rate, 1),
        poll_policy=PollPolicy(first_poll_s=2.0),
        progress_every_s=3600,
        canary=CanaryMode.OFF,  # speed against the ideal: first contact is not measured here
    )

    async def go() -> dict:
        async with NovitaClient(base_url, KEY) as client:
            cpu, started = time.process_time(), time.monotonic()
            outcome = await run_engine(state, client, folder / "run", config)
            return {
                "started": started,
                "makespan_s": time.monotonic() - started,
                "cpu_s": time.process_time() - cpu,
                "succeeded": outcome.counts.get("succeeded", 0),
                "downloaded": outcome.downloaded,
                "poll_lateness_p99_ms": 1000 * _percentile(list(outcome.poll_lateness_s), 99),
            }

    result = asyncio.run(go())
    result["peak_rss_mb"] = _peak_rss_mb()
    result["whole_videos"] = _whole_videos(folder / "run" / "videos")
    return result


def _whole_videos(folder: Path) -> int:
    """Videos on disk whose MP4 boxes add up (none if a ``.part`` is left)."""
    files = list(folder.iterdir())
    if any(path.suffix == ".part" for path in files):
        return 0
    return sum(1 for path in files if path.suffix == ".mp4" and check_mp4(path).whole)


def sdk_side(base_url: str, tasks: int, threads: int) -> dict:
    """What a user would script with the official SDK: submit, ``wait_for_task_v3``,
    download, in a thread pool. Errors are counted, as the script would log them."""
    import logging

    import requests
    from novita_client import NovitaClient as OfficialClient

    for noisy in ("novita_client", "urllib3"):  # every poll, every 429, every full pool
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    folder = _workdir(1)
    image = base64.b64encode((folder / "frame.png").read_bytes()).decode()
    client = OfficialClient(KEY, base_url)
    failures: list[str] = []

    def one(i: int) -> None:
        try:
            body = {"image": image, "prompt": f"bench shot {i}", "sound": False}
            task_id = client._post(SUBMIT_PATH, body)["task_id"]
            result = client.wait_for_task_v3(task_id)
            video = requests.get(result.videos[0].video_url, timeout=60)
            (folder / f"{i}.mp4").write_bytes(video.content)
        except Exception as exc:  # a typical script logs and goes on
            failures.append(f"{type(exc).__name__}: {exc}")

    cpu, started = time.process_time(), time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(tasks)))
    return {
        "started": started,
        "makespan_s": time.monotonic() - started,
        "cpu_s": time.process_time() - cpu,
        "succeeded": tasks - len(failures),
        "failures": failures[:3],
        "peak_rss_mb": _peak_rss_mb(),
        "whole_videos": len(list(folder.glob("*.mp4"))),
    }


def parts_side(base_url: str, count: int) -> dict:
    """What each part of a task costs alone, one at a time, in CPU ms: the floor under
    CPU per task. A run cannot cost less than a submit, its polls, a download and the
    ledger's two durable commits (the money rules); the rest is scheduling."""
    folder, planned, state = _planned_run(count)
    keys = [task.key for task in planned.tasks]
    request = planned.tasks[0].request
    body = request.body({"image": image_payload(request.image)})
    videos = folder / "videos"
    videos.mkdir()

    async def go() -> dict:
        cost: dict[str, float] = {}
        async with NovitaClient(base_url, KEY) as client, aiohttp.ClientSession() as plain:
            started = time.process_time()
            ids = [await client.submit(SUBMIT_PATH, body) for _ in keys]
            cost["submit"] = time.process_time() - started
            await asyncio.sleep(0.5)  # the parts simulator finishes tasks at once
            started = time.process_time()
            results = [await client.task_result(task_id) for task_id in ids]
            cost["poll"] = time.process_time() - started
            started = time.process_time()
            for index, result in enumerate(results):
                await download(plain, result.video_url, videos / f"{index}.mp4")
            cost["download"] = time.process_time() - started
        started = time.process_time()  # the MP4 box walk alone (it is in the download too)
        for index in range(count):
            check_mp4(videos / f"{index}.mp4", 5)
        cost["mp4 check"] = time.process_time() - started
        started = time.process_time()
        for key, task_id in zip(keys, ids, strict=True):
            state.mark_submitted(key, state.mark_submitting(key), task_id)
        cost["ledger"] = time.process_time() - started
        return {name: 1000 * seconds / count for name, seconds in cost.items()}

    return asyncio.run(go())


def videos_side(base_url: str, tasks: int) -> dict:
    """Pictures out: a run of ``tasks`` against the simulator's real videos (made from
    the submitted image), then its contact sheet drawn from scratch; then the same
    sheet with every video a 1080p 10 s H.264 file (a real API video's size), and a
    poster and box check of that file alone."""
    folder, _, state = _planned_run(tasks)
    run_dir = folder / "run"
    run_quick_night(base_url, state, run_dir)
    records = state.tasks()
    result = {"whole_videos": _whole_videos(run_dir / "videos")}
    started = time.monotonic()
    pages = write_contact_sheet(records, run_dir, "bench")
    result.update(sheet_s=time.monotonic() - started, pages=len(pages))

    full_hd = _full_hd_video(folder / "1080p.mp4")
    result["video_mb"] = full_hd.stat().st_size / 1e6
    for record in records:  # every task's video becomes the 1080p one
        target = run_dir / str(record.video_path)
        target.unlink()
        target.hardlink_to(full_hd)
    started = time.monotonic()  # what each download does in its disk thread
    for record in records:
        write_poster(run_dir / str(record.video_path))
    result["poster_and_frames_ms"] = 1000 * (time.monotonic() - started) / len(records)
    started = time.monotonic()
    write_contact_sheet(records, run_dir, "bench")
    result["sheet_1080p_s"] = time.monotonic() - started
    shutil.rmtree(run_dir / "videos" / FRAMES_DIR)  # a folder without them: decode all
    started = time.monotonic()
    write_contact_sheet(records, run_dir, "bench")
    result["sheet_1080p_cold_s"] = time.monotonic() - started
    started = time.monotonic()
    for _ in range(1000):
        check_mp4(full_hd, 10)
    result["check_ms"] = time.monotonic() - started  # 1000 checks: seconds = ms each
    copy = folder / "poster-me.mp4"
    copy.hardlink_to(full_hd)
    times = []
    for _ in range(5):
        started = time.monotonic()
        write_poster(copy)
        times.append(time.monotonic() - started)
    result["poster_ms"] = 1000 * statistics.median(times)
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


def _full_hd_video(path: Path, seconds: int = 10, fps: int = 24) -> Path:
    """A 1080p H.264 video with a keyframe every 2 s and a moving, textured picture (so
    the frames are not trivially compressible)."""
    import av
    from PIL import ImageFilter

    texture = Image.effect_noise((1920, 1080), 90).filter(ImageFilter.GaussianBlur(2))
    still = texture.convert("RGB")
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "20", "g": str(2 * fps)}
        for index in range(seconds * fps):
            frame = av.VideoFrame.from_image(still.rotate(index * 0.1))
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def images_side(count: int, width: int, height: int, fmt: str) -> dict:
    """``validate`` of a folder of ``count`` pictures (one file linked under many names:
    each name is read on its own), first with an empty check cache and then again,
    beside the ideal: one decode per file divided among the cores."""
    from runner.cli.commands import main

    folder = Path(tempfile.mkdtemp(prefix="kling-bench-images-"))
    os.environ["KLING_BATCH_CACHE"] = str(folder / "cache")  # empty: the first is cold
    shots = folder / "shots"
    shots.mkdir()
    first = shots / f"p00000.{fmt}"
    Image.effect_noise((width, height), 60).convert("RGB").save(first, quality=92)
    for index in range(1, count):
        (shots / f"p{index:05d}.{fmt}").hardlink_to(first)
    (folder / "m.yaml").write_text("rows:\n  - {image: shots/, prompt: p, sound: false}\n")
    decode_s = _decode_s(first)
    started = time.monotonic()
    with TreeRss() as memory:
        code = main(["validate", str(folder / "m.yaml")])
    seconds = time.monotonic() - started
    started = time.monotonic()
    main(["validate", str(folder / "m.yaml")])
    cached_s = time.monotonic() - started
    ideal = count * decode_s / (os.cpu_count() or 1)
    return {"seconds": seconds, "cached_s": cached_s, "ideal_s": ideal,
            "decode_ms": 1000 * decode_s, "exit": code, "all_rss_mb": memory.peak_mb}  # fmt: skip


def conversions_side(count: int, width: int, height: int) -> dict:
    """``count`` distinct camera JPEGs made into first frames (``runner.media.picture_pool``),
    beside one decode per file divided among the cores."""
    from runner.manifest.files import load
    from runner.manifest.plan import plan
    from runner.media.picture_pool import convert_pictures

    folder = Path(tempfile.mkdtemp(prefix="kling-bench-convert-"))
    os.environ["KLING_BATCH_CACHE"] = str(folder / "cache")
    shots = folder / "shots"
    shots.mkdir()
    noise = Image.effect_noise((width, height), 60).convert("RGB")
    for index in range(count):
        noise.putpixel((index, 0), (index, index, index))  # each its own content
        noise.save(shots / f"p{index:03d}.jpg", quality=92)
    (folder / "m.yaml").write_text("rows:\n  - {image: shots/, prompt: p, sound: false}\n")
    planned = plan(load(folder / "m.yaml"))
    decode_s = _decode_s(shots / "p000.jpg")
    started = time.monotonic()
    with TreeRss() as memory:
        made = convert_pictures(folder / "run", planned.conversions)
    seconds = time.monotonic() - started
    sizes = [m.size_bytes for m in made.values()]
    return {"seconds": seconds, "ideal_s": count * decode_s / (os.cpu_count() or 1),
            "made": len(sizes), "mean_kb": sum(sizes) / max(1, len(sizes)) / 1000,
            "source_mb": (shots / "p000.jpg").stat().st_size / 1e6,
            "all_rss_mb": memory.peak_mb}  # fmt: skip


def _decode_s(path: Path) -> float:
    """One whole decode of ``path``, the best of five (the ideal's unit)."""
    times = []
    for _ in range(5):
        started = time.monotonic()
        with Image.open(path) as image:
            image.load()
        times.append(time.monotonic() - started)
    return min(times)


def validate_side(rows: int, kind: str) -> dict:
    """``validate`` of ``rows`` rows, as CSV or as YAML (one flow mapping per row)."""
    from runner.cli.commands import main

    folder = _workdir(rows)
    manifest = folder / "batch.csv"
    if kind == "yaml":
        manifest = folder / "batch.yaml"
        lines = [
            f"  - {{id: r{i}, image: frame.png, prompt: 'bench shot {i}', sound: false}}"
            for i in range(rows)
        ]
        manifest.write_text("rows:\n" + "\n".join(lines) + "\n")
    started = time.monotonic()
    code = main(["validate", str(manifest)])
    return {"seconds": time.monotonic() - started, "exit": code, "peak_rss_mb": _peak_rss_mb()}


# --- figures -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One bench scenario: the work, the simulator's task times, and the targets."""

    tasks: int
    rate: float  # submits/s, = the server's limit
    poll_rate: float  # our poll rate, = the server's poll limit
    queue_s: float
    generation_s: float
    spread: tuple[str, float]  # ("sigma", log-normal sigma) or ("uniform", +- fraction)
    eta: bool  # does Task Result report an eta?
    video_mb: float = 0.0  # 0: the simulator's small sample video
    poll_limited: bool = False  # does the simulator enforce the poll rate too (429s)?
    targets: dict[str, str] = field(default_factory=dict)
    about: str = ""


SCENARIOS = {
    "default": Scenario(
        2000, 100, 200, 2.0, 6.0, ("sigma", 0.3), True,
        targets={"ratio": "<= 1.05", "polls_per_task": "<= 3", "detect_p95_s": "<= 1.5",
                 "cpu_ms_per_task": "<= 2.3"},
        about="queue ~2 s, generation ~6 s (log-normal medians, sigma 0.3), eta reported",
    ),
    "eta": Scenario(
        2000, 100, 200, 1.0, 4.0, ("uniform", 0.5), True,
        targets={"ratio": "<= 1.04", "polls_per_task": "<= 3", "detect_p95_s": "<= 1.0"},
        about="speed issue, table 1: generation 4 s +- 2 s, queue 1 s, eta reported",
    ),
    "no-eta": Scenario(
        600, 20, 20, 1.0, 30.0, ("uniform", 0.5), False, poll_limited=True,
        targets={"ratio": "<= 1.05", "polls_per_task": "<= 4", "detect_p95_s": "<= 3"},
        about="speed issue, table 2: generation 30 s +- 15 s, no eta, progress reported",
    ),
    "big-videos": Scenario(
        300, 10, 200, 0.5, 2.0, ("uniform", 0.25), True, video_mb=20.0,
        targets={"poll_lateness_p99_ms": "<= 50", "whole_videos": "= tasks"},
        about="20 MB videos finishing at 10/s",
    ),
}  # fmt: skip


def sim_config(scenario: Scenario, seed: int, rate: float | None = None) -> SimConfig:
    """The simulator for a scenario; ``rate`` overrides its submit limit (the scale run)."""
    spread, amount = scenario.spread
    rate = rate or scenario.rate
    return SimConfig(
        video_source="sample",  # the tiny fixed video: the bench measures the runner
        video_bytes=int(scenario.video_mb * 1_000_000) or None,
        api_key=KEY,
        queue_s=scenario.queue_s,
        generation_s=scenario.generation_s,
        time_sigma=amount if spread == "sigma" else None,
        jitter=amount if spread == "uniform" else 0.25,
        report_eta=scenario.eta,
        submit_limit=int(rate * WINDOW_S),
        poll_limit=int(scenario.poll_rate * WINDOW_S) if scenario.poll_limited else None,
        limit_window_s=WINDOW_S,
        seed=seed,
    )


def parts_config() -> SimConfig:
    return SimConfig(
        api_key=KEY, queue_s=0.0, generation_s=0.0, jitter=0.0, seed=1, video_source="sample"
    )


# Folders for "images in": count, size, format, the targets for the first
# validate and the second (cached).
IMAGE_FOLDERS = [
    (500, 4032, 3024, "jpg", "<= 1.3x the ideal", "<= 2 s"),
    (10_000, 400, 300, "png", "<= 15 s", "<= 3 s"),
]
CONVERSIONS = (40, 4032, 3024)  # distinct files: a conversion is made once per content


def videos_config() -> SimConfig:
    """Real videos made from the submitted image (one per image and duration)."""
    return SimConfig(api_key=KEY, queue_s=0.0, generation_s=0.2, jitter=0.0, seed=1)


def measure(side: Callable[..., dict], config: SimConfig, tasks: int, rate: float, *args) -> dict:
    with SimulatorProcess(config) as sim:
        result = _in_process(side, sim.base_url, tasks, *args)
        stats, timings = sim.get("/_sim/stats"), sim.get("/_sim/tasks")
    timings.sort(key=lambda t: t["created_at"])
    ideal = max(i / rate + (t["done_at"] - t["created_at"]) for i, t in enumerate(timings))
    delays = sorted(t["seen_done_at"] - t["done_at"] for t in timings if t["seen_done_at"])
    result.update(
        ideal_s=ideal,
        ratio=result["makespan_s"] / ideal,
        created=stats["tasks_created"],
        rate_limited=sum(stats["rate_limited"].values()),
        polls_per_task=stats["polls"] / tasks,
        detect_p50_s=_percentile(delays, 50),
        detect_p95_s=_percentile(delays, 95),
        cpu_ms_per_task=1000 * result["cpu_s"] / tasks,
    )
    return result


def _percentile(values: list[float], pct: int) -> float:
    """The ``pct``-th percentile (1..99); NaN when there is nothing to rank."""
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


ROWS = [  # label, result key, format
    ("makespan, s", "makespan_s", "{:.1f}"),
    ("ideal bound, s", "ideal_s", "{:.1f}"),
    ("makespan / bound", "ratio", "{:.3f}"),
    ("tasks succeeded", "succeeded", "{:d}"),
    ("tasks created", "created", "{:d}"),
    ("videos written whole", "whole_videos", "{:d}"),
    ("429s received", "rate_limited", "{:d}"),
    ("polls per task", "polls_per_task", "{:.2f}"),
    ("detection p50, s", "detect_p50_s", "{:.2f}"),
    ("detection p95, s", "detect_p95_s", "{:.2f}"),
    ("CPU per task, ms", "cpu_ms_per_task", "{:.2f}"),
    ("peak RSS, MB", "peak_rss_mb", "{:.0f}"),
    ("poll lateness p99, ms", "poll_lateness_p99_ms", "{:.0f}"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenario", action="append", choices=list(SCENARIOS), help="(repeatable; default: all)"
    )
    parser.add_argument("--tasks", type=int, help="instead of each scenario's own count")
    parser.add_argument("--sdk-threads", type=int, default=128)
    parser.add_argument("--scale-tasks", type=int, default=20000)
    parser.add_argument("--scale-rate", type=float, default=400.0)
    parser.add_argument("--validate-rows", type=int, default=100_000)
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["sdk", "scale", "parts", "videos", "images", "validate"],
    )
    parser.add_argument("--sheet-tasks", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    polls_per_task = 2.0
    for name in args.scenario or list(SCENARIOS):
        scenario = SCENARIOS[name]
        if args.tasks:
            scenario = replace(scenario, tasks=args.tasks)
        config = sim_config(scenario, args.seed)
        work = (scenario.tasks, scenario.rate)
        print(f"\n[{name}] kling-batch: {scenario.tasks:,} tasks ...", flush=True)
        ours = measure(kling_batch_side, config, *work, scenario.rate, scenario.poll_rate)
        theirs = None
        if "sdk" not in args.skip:
            print(f"[{name}] SDK script: the same, {args.sdk_threads} threads ...", flush=True)
            theirs = measure(sdk_side, config, *work, args.sdk_threads)
        print_scenario(name, scenario, ours, theirs, args.sdk_threads)
        if name == "default":
            polls_per_task = ours["polls_per_task"]
    if "scale" not in args.skip:
        print(f"\nkling-batch: {args.scale_tasks:,} tasks at {args.scale_rate:g}/s ...", flush=True)
        scaled = sim_config(SCENARIOS["default"], args.seed, rate=args.scale_rate)
        work = (args.scale_tasks, args.scale_rate)
        print_scale(args, measure(kling_batch_side, scaled, *work, *work[1:], args.scale_rate * 2))
    if "parts" not in args.skip:
        with SimulatorProcess(parts_config()) as sim:
            print_parts(_in_process(parts_side, sim.base_url, 300), polls_per_task)
    if "videos" not in args.skip:
        print(f"\npictures out: {args.sheet_tasks} tasks with real videos ...", flush=True)
        with SimulatorProcess(videos_config()) as sim:
            print_videos(_in_process(videos_side, sim.base_url, args.sheet_tasks), args)
    if "images" not in args.skip:
        for count, width, height, fmt, target, cached in IMAGE_FOLDERS:
            print(f"\nimages in: validate {count:,} {width}x{height} {fmt} ...", flush=True)
            found = _in_process(images_side, count, width, height, fmt)
            print(
                f"validate {count:,} {width}x{height} {fmt} files: {found['seconds']:.1f} s, "
                f"{found['seconds'] / found['ideal_s']:.2f}x the ideal {found['ideal_s']:.1f} s "
                f"(one decode of {found['decode_ms']:.1f} ms per file / cores; target "
                f"{target}); again, cached: {found['cached_s']:.1f} s (target {cached}); "
                f"exit {found['exit']}, peak RSS {found['all_rss_mb']:.0f} MB with its workers"
            )
        count, width, height = CONVERSIONS
        print(f"\nimages in: convert {count} {width}x{height} JPEGs ...", flush=True)
        made = _in_process(conversions_side, count, width, height)
        print(
            f"convert {made['made']} {width}x{height} JPEGs ({made['source_mb']:.1f} MB) to "
            f"first frames: {made['seconds']:.1f} s, {made['seconds'] / made['ideal_s']:.2f}x "
            f"one decode per file / cores ({made['ideal_s']:.1f} s), {made['mean_kb']:.0f} KB "
            f"each; peak RSS {made['all_rss_mb']:.0f} MB with its workers (target <= 600)"
        )
    if "validate" not in args.skip:
        for kind, target in (("csv", "<= 10"), ("yaml", "<= 20")):
            checked = _in_process(validate_side, args.validate_rows, kind)
            print(
                f"\nvalidate {args.validate_rows:,} {kind.upper()} rows: "
                f"{checked['seconds']:.1f} s (target {target}), exit {checked['exit']}, "
                f"peak RSS {checked['peak_rss_mb']:.0f} MB"
            )


def print_scenario(
    name: str, scenario: Scenario, ours: dict, theirs: dict | None, threads: int
) -> None:
    """One scenario's figures, kling-batch beside the SDK script, with the targets."""
    sdk = f"SDK, {threads} threads"
    print(
        f"\n[{name}] {scenario.tasks:,} tasks; submits {scenario.rate:g}/s and polls "
        f"{scenario.poll_rate:g}/s (server limits over a sliding {WINDOW_S:g} s window); "
        f"{scenario.about}"
    )
    print(f"{'':<24}{'kling-batch':>14}{sdk:>20}{'SDK / ours':>12}{'target':>10}")
    for label, key, fmt in ROWS:
        mine, other = ours.get(key), (theirs or {}).get(key)
        ratio = f"{other / mine:.1f}x" if isinstance(mine, float) and other and mine else ""
        target = scenario.targets.get(key, "").replace("tasks", str(scenario.tasks))
        print(
            f"{label:<24}{fmt.format(mine) if mine is not None else '-':>14}"
            f"{fmt.format(other) if other is not None else '-':>20}{ratio:>12}{target:>10}"
        )
    if theirs and theirs.get("failures"):
        print(f"  SDK script failures, first ones: {[f[:80] for f in theirs['failures']]}")


def print_scale(args: argparse.Namespace, scale: dict) -> None:
    print(
        f"{args.scale_tasks:,} tasks at {args.scale_rate:g}/s: makespan "
        f"{scale['makespan_s']:.1f} s (bound {scale['ideal_s']:.1f}, ratio "
        f"{scale['ratio']:.3f}), {scale['succeeded']:,} succeeded, CPU "
        f"{scale['cpu_ms_per_task']:.2f} ms/task, peak RSS {scale['peak_rss_mb']:.0f} MB "
        f"(target <= 300), 429s {scale['rate_limited']}, polls/task {scale['polls_per_task']:.2f}"
    )


def print_parts(parts: dict, polls_per_task: float) -> None:
    floor = parts["submit"] + polls_per_task * parts["poll"] + parts["download"]
    floor += parts["ledger"]
    print(
        f"\nCPU floor, each part alone (ms): submit {parts['submit']:.2f}, poll "
        f"{parts['poll']:.2f} x {polls_per_task:.2f}, download + fsync "
        f"{parts['download']:.2f}, ledger's two durable commits {parts['ledger']:.2f} "
        f"= {floor:.2f} ms per task"
    )
    print(f"MP4 box check of a video (in the download above): {parts['mp4 check']:.3f} ms (<= 1)")


def print_videos(videos: dict, args: argparse.Namespace) -> None:
    print(
        f"contact sheet of {args.sheet_tasks} tasks (simulator's 320 px videos, "
        f"{videos['whole_videos']} whole, {videos['pages']} page(s)): "
        f"{videos['sheet_s']:.1f} s (target <= 15)"
    )
    print(
        f"the same with every video 1080p 10 s ({videos['video_mb']:.1f} MB each): "
        f"{videos['sheet_1080p_s']:.1f} s (target <= 15) with the frames the downloads "
        f"took ({videos['poster_and_frames_ms']:.0f} ms a video in the disk thread); "
        f"{videos['sheet_1080p_cold_s']:.1f} s with none taken (every video decoded)"
    )
    print(
        f"1080p 10 s video: box check {videos['check_ms']:.3f} ms (<= 1), poster "
        f"{videos['poster_ms']:.0f} ms (<= 100); peak RSS {videos['peak_rss_mb']:.0f} MB"
    )


if __name__ == "__main__":
    main()
