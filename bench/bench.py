"""``make bench``: kling-batch against the simulator, beside the script a user would write.

Each side runs in its own process, and the simulator in a third, so that CPU and
memory are the runner's own and the simulator's work does not share its core.

Scenarios (all figures printed with their targets):
1. ``validate`` of a 100,000-row CSV manifest (wall time).
2. kling-batch on N tasks (default 2,000) at the server's submit limit (default
   100/s, enforced by the simulator over a sliding 10 s window), with log-normal queue
   and generation times: makespan against the ideal bound, 429s, polls per task, the
   delay between a task finishing on the server and a poll seeing it, CPU per task
   and peak RSS.
3. The same work through the official ``novita-client`` SDK the way its README
   suggests: ``_post`` then ``wait_for_task_v3`` (a poll every 0.5 s) in a thread pool.
4. kling-batch on 20,000 tasks (faster, so it fits in a bench run): CPU per task and
   peak RSS, the figures that decide whether a laptop can hold a big batch.
5. The parts of one task alone, one at a time (a submit, a poll, a download with its
   fsync, the ledger's two durable commits): the floor under CPU per task.

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
import resource
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image

from jobs import DEFAULT_MODEL, model_named
from jobs.images import image_payload
from runner.client import NovitaClient
from runner.engine import EngineConfig, run_engine
from runner.fetch import download
from runner.limits import Rate
from runner.manifest_files import load
from runner.plan import Plan, plan
from runner.poll import PollPolicy
from runner.simulator import SimConfig, Simulator
from runner.state import RunState

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
    conn.send(target(*args))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _workdir(tasks: int) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="kling-bench-"))
    Image.new("RGB", (640, 360), (200, 120, 40)).save(folder / "frame.png")
    lines = [f"r{i},frame.png,bench shot {i},false" for i in range(tasks)]
    (folder / "batch.csv").write_text("id,image,prompt,sound\n" + "\n".join(lines) + "\n")
    return folder


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
        poll_policy=PollPolicy(first_delay_s=2.0),
        progress_every_s=3600,
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
                "poll_lateness_p99_s": _p99(list(outcome.poll_lateness_s)),
            }

    result = asyncio.run(go())
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


def sdk_side(base_url: str, tasks: int, threads: int) -> dict:
    """What a user would script with the official SDK: submit, ``wait_for_task_v3``,
    download, in a thread pool. Errors are counted, as the script would log them."""
    import logging

    import requests
    from novita_client import NovitaClient as OfficialClient

    logging.getLogger("novita_client").setLevel(logging.WARNING)  # it logs every poll
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
        started = time.process_time()
        for key, task_id in zip(keys, ids, strict=True):
            state.mark_submitted(key, state.mark_submitting(key), task_id)
        cost["ledger"] = time.process_time() - started
        return {name: 1000 * seconds / count for name, seconds in cost.items()}

    return asyncio.run(go())


def validate_side(rows: int) -> dict:
    from runner.cli import main

    folder = _workdir(rows)
    started = time.monotonic()
    code = main(["validate", str(folder / "batch.csv")])
    return {"seconds": time.monotonic() - started, "exit": code, "peak_rss_mb": _peak_rss_mb()}


# --- figures -------------------------------------------------------------------------------


# Task times of the scenarios: (queue s, generation s, spread, eta reported). A spread
# below 1 is log-normal sigma; "uniform" spreads are jitter fractions (4 s ± 2 s = 0.5).
SCENARIOS = {
    "default": (2.0, 6.0, ("sigma", 0.3), True),
    "eta": (1.0, 4.0, ("uniform", 0.5), True),  # speed issue, table 1
    "no-eta": (1.0, 30.0, ("uniform", 0.5), False),  # speed issue, table 2
    "big-videos": (0.5, 2.0, ("uniform", 0.25), True),  # with --video-mb 20 --rate 10
}


def sim_config(
    rate: float,
    seed: int,
    scenario: str = "default",
    video_mb: float = 0.0,
    poll_rate: float | None = None,
) -> SimConfig:
    queue_s, generation_s, (spread, amount), eta = SCENARIOS[scenario]
    return SimConfig(
        video_bytes=int(video_mb * 1_000_000) or None,
        api_key=KEY,
        queue_s=queue_s,
        generation_s=generation_s,
        time_sigma=amount if spread == "sigma" else None,
        jitter=amount if spread == "uniform" else 0.25,
        report_eta=eta,
        submit_limit=int(rate * WINDOW_S),
        poll_limit=int(poll_rate * WINDOW_S) if poll_rate else None,
        limit_window_s=WINDOW_S,
        seed=seed,
    )


def parts_config() -> SimConfig:
    return SimConfig(api_key=KEY, queue_s=0.0, generation_s=0.0, jitter=0.0, seed=1)


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
        detect_p50_s=statistics.median(delays) if delays else float("nan"),
        detect_p95_s=_p95(delays),
        cpu_ms_per_task=1000 * result["cpu_s"] / tasks,
    )
    return result


def _p99(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def _p95(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[94]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=100.0, help="submits/s, = the server's")
    parser.add_argument("--poll-rate", type=float, default=200.0)
    parser.add_argument("--sdk-threads", type=int, default=128)
    parser.add_argument("--scale-tasks", type=int, default=20000)
    parser.add_argument("--scale-rate", type=float, default=400.0)
    parser.add_argument("--validate-rows", type=int, default=100_000)
    parser.add_argument("--skip", action="append", default=[], choices=["sdk", "scale"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--scenario", choices=sorted(SCENARIOS), default="default", help="task times and eta"
    )
    parser.add_argument("--video-mb", type=float, default=0.0, help="size of each video")
    args = parser.parse_args()

    print(f"validate: {args.validate_rows:,} rows ...", flush=True)
    checked = _in_process(validate_side, args.validate_rows)
    print(f"kling-batch: {args.tasks:,} tasks at {args.rate:g}/s ...", flush=True)
    config = sim_config(args.rate, args.seed, args.scenario, args.video_mb, args.poll_rate)
    ours = measure(kling_batch_side, config, args.tasks, args.rate, args.rate, args.poll_rate)
    theirs = None
    if "sdk" not in args.skip:
        print(f"SDK script: the same, {args.sdk_threads} threads ...", flush=True)
        theirs = measure(sdk_side, config, args.tasks, args.rate, args.sdk_threads)
    scale = None
    if "scale" not in args.skip:
        print(f"kling-batch: {args.scale_tasks:,} tasks at {args.scale_rate:g}/s ...", flush=True)
        scaled = sim_config(args.scale_rate, args.seed)
        scale = measure(
            kling_batch_side,
            scaled,
            args.scale_tasks,
            args.scale_rate,
            args.scale_rate,
            args.scale_rate * 2,
        )
    print("the parts of a task alone ...", flush=True)
    with SimulatorProcess(parts_config()) as sim:
        parts = _in_process(parts_side, sim.base_url, 300)
    report(args, checked, ours, theirs, scale, parts)


def report(
    args, checked: dict, ours: dict, theirs: dict | None, scale: dict | None, parts: dict
) -> None:
    sdk = f"SDK, {args.sdk_threads} threads"
    print()
    print(
        f"{args.tasks:,} tasks; server limit {args.rate:g}/s over a sliding {WINDOW_S:g} s "
        f"window; queue ~2 s, generation ~6 s (log-normal medians, sigma 0.3)"
    )
    rows = [
        ("makespan, s", "makespan_s", "{:.1f}", ""),
        ("ideal bound, s", "ideal_s", "{:.1f}", ""),
        ("makespan / ideal", "ratio", "{:.3f}", "<= 1.05"),
        ("tasks succeeded", "succeeded", "{:d}", f"{args.tasks}"),
        ("tasks created", "created", "{:d}", f"{args.tasks}"),
        ("429s received", "rate_limited", "{:d}", "0"),
        ("polls per task", "polls_per_task", "{:.2f}", "<= 3"),
        ("detection delay p50, s", "detect_p50_s", "{:.2f}", ""),
        ("detection delay p95, s", "detect_p95_s", "{:.2f}", "<= 1.5"),
        ("CPU per task, ms", "cpu_ms_per_task", "{:.2f}", "<= 1"),
        ("peak RSS, MB", "peak_rss_mb", "{:.0f}", ""),
    ]
    print(f"{'':<24}{'kling-batch':>14}{sdk:>22}{'SDK / ours':>12}{'target':>10}")
    for label, key, fmt, target in rows:
        mine = fmt.format(ours[key])
        other = fmt.format(theirs[key]) if theirs else "-"
        ratio = (
            f"{theirs[key] / ours[key]:.1f}x"
            if theirs and isinstance(ours[key], float) and ours[key]
            else ""
        )
        print(f"{label:<24}{mine:>14}{other:>22}{ratio:>12}{target:>10}")
    print(
        f"poll lateness p99 (sent minus due): {1000 * ours['poll_lateness_p99_s']:.0f} ms "
        "(target <= 50 with 20 MB videos finishing at 10/s: --scenario big-videos "
        "--video-mb 20 --rate 10)"
    )
    if theirs and theirs.get("failures"):
        print(f"  SDK script failures, first ones: {theirs['failures']}")
    if scale:
        print(
            f"\n{args.scale_tasks:,} tasks at {args.scale_rate:g}/s: makespan "
            f"{scale['makespan_s']:.1f} s (ideal {scale['ideal_s']:.1f}, ratio "
            f"{scale['ratio']:.3f}), {scale['succeeded']:,} succeeded, CPU "
            f"{scale['cpu_ms_per_task']:.2f} ms/task (target <= 1), peak RSS "
            f"{scale['peak_rss_mb']:.0f} MB (target <= 300), 429s {scale['rate_limited']}, "
            f"polls/task {scale['polls_per_task']:.2f}"
        )
    floor = parts["submit"] + ours["polls_per_task"] * parts["poll"]
    floor += parts["download"] + parts["ledger"]
    print(
        f"\nCPU floor, each part alone (ms): submit {parts['submit']:.2f}, poll "
        f"{parts['poll']:.2f} x {ours['polls_per_task']:.2f}, download + fsync "
        f"{parts['download']:.2f}, ledger's two durable commits {parts['ledger']:.2f} "
        f"= {floor:.2f} ms per task; measured in the run {ours['cpu_ms_per_task']:.2f} "
        f"({ours['cpu_ms_per_task'] / floor:.2f}x the floor; the rest is scheduling)"
    )
    print(
        f"\nvalidate {args.validate_rows:,} CSV rows: {checked['seconds']:.1f} s "
        f"(target <= 10), exit {checked['exit']}, peak RSS {checked['peak_rss_mb']:.0f} MB"
    )


if __name__ == "__main__":
    main()
