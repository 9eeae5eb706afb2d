"""The whole pipeline against the simulator over real sockets: submit, poll, download,
report, and running again. Faults are scripted or seeded, so no test depends on luck."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import textwrap
import time
from pathlib import Path

import av
import pandas as pd
import pytest
from PIL import Image

from jobs.images import image_payload
from runner.api.client import NovitaClient
from runner.core.clock import ManualClock
from runner.core.errors import ApiUnreachable, FolderChanged
from runner.core.rates import Rate
from runner.core.records import TaskStatus
from runner.engine.poll import PollScheduler
from runner.engine.poll_timing import LEARN_AFTER, PollPolicy
from runner.engine.rate_limits import EndpointLimiter
from runner.engine.retry import RetryLimits
from runner.engine.stopping import StopSwitch
from runner.engine.submit import ImageCache
from runner.engine.wiring import EngineConfig, RunOutcome, run_engine
from runner.ledger.transitions import RunState
from runner.manifest.files import load
from runner.manifest.plan import plan
from runner.media.mp4 import check_mp4
from runner.reports.report import REPORT_CSV, write_reports
from runner.simulator import Simulator
from tests.conftest import SIM_KEY, draw_image, fast_engine_config


def write_manifest(folder: Path, body: str) -> Path:
    path = folder / "batch.yaml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def simple_manifest(folder: Path, rows: int) -> Path:
    draw_image(folder / "img.png", 640, 360)
    lines = "".join(
        f"  - {{id: r{i}, image: img.png, prompt: 'prompt {i}'}}\n" for i in range(rows)
    )
    return write_manifest(folder, "defaults: {sound: false}\nrows:\n" + lines)


async def run_batch(
    sim: Simulator,
    manifest: Path | None,
    run_dir: Path,
    config: EngineConfig | None = None,
    key: str = SIM_KEY,
) -> tuple[RunState, RunOutcome]:
    """Plan ``manifest`` into the run folder (None: resume it as it is) and run it."""
    state = RunState.open(run_dir)
    if manifest is not None:
        planned = plan(load(manifest))
        assert planned.ok, [str(p) for p in planned.problems]
        state.sync_plan(planned.tasks)
    async with NovitaClient(sim.base_url, key) as client:
        outcome = await run_engine(state, client, run_dir, config or fast_engine_config())
    return state, outcome


@pytest.fixture
def mixed_manifest(tmp_path: Path) -> Path:
    draw_image(tmp_path / "img" / "land.png", 1280, 720)
    draw_image(tmp_path / "img" / "portrait.jpg", 720, 1280)
    draw_image(tmp_path / "img" / "square.png", 512, 512)
    draw_image(tmp_path / "img" / "edge.jpeg", 750, 300)  # exactly 2.5:1
    return write_manifest(
        tmp_path,
        """\
        defaults:
          duration: 5
          sound: false
        rows:
          - {id: land, image: img/land.png, prompt: "a landscape", cfg_scale: 0.8}
          - {id: portrait, image: img/portrait.jpg, prompt: "a portrait", aspect_ratio: "9:16"}
          - {id: square, image: img/square.png, prompt: "a square", duration: 10,
             aspect_ratio: "1:1"}
          - {id: edge, image: img/edge.jpeg, prompt: "the edge", sound: true, voice_list: [v1, v2]}
          - {id: url, image: "https://example.com/city.jpg", prompt: ["dawn", "dusk"]}
        """,
    )


async def test_mixed_manifest_runs_to_all_succeeded_with_one_video_each(
    sim, mixed_manifest, tmp_path
):
    run_dir = tmp_path / "run"
    state, outcome = await run_batch(sim, mixed_manifest, run_dir)

    records = state.tasks()
    assert [r.task_key for r in records] == [
        "land/1",
        "portrait/1",
        "square/1",
        "edge/1",
        "url/1",
        "url/2",
    ]
    assert {r.status for r in records} == {TaskStatus.SUCCEEDED}
    assert outcome.created == 6 and outcome.stopped_by is None
    # Task ids are exactly the ones the server created, each used once.
    assert sorted(r.task_id for r in records) == sorted(sim.tasks)
    # One real video file per task, named from its key, inside the run folder.
    videos = sorted(p.name for p in (run_dir / "videos").glob("*.mp4"))
    assert videos == [
        "edge_1.mp4",
        "land_1.mp4",
        "portrait_1.mp4",
        "square_1.mp4",
        "url_1.mp4",
        "url_2.mp4",
    ]
    assert all(r.video_path and (run_dir / r.video_path).stat().st_size > 1000 for r in records)
    # Beside each video, its poster and its story; inside it, its key and prompt.
    for record in records:
        video = run_dir / str(record.video_path)
        with Image.open(video.with_suffix(".jpg")) as poster:
            assert poster.format == "JPEG" and poster.width > 100
        story = json.loads(video.with_suffix(".json").read_text(encoding="utf-8"))
        assert story["task_id"] == record.task_id and story["task_key"] == record.task_key
        assert story["prompt"] == sim.tasks[str(record.task_id)].prompt
        with av.open(str(video)) as container:
            assert container.metadata["title"] == record.task_key
            assert container.metadata["comment"] == story["prompt"]
    # What the server received is what the manifest asked for, per-row overrides included.
    sent = {sim.tasks[r.task_id].prompt: sim.tasks[r.task_id].request for r in records}
    assert sent["a landscape"]["cfg_scale"] == 0.8
    assert sent["a portrait"]["aspect_ratio"] == "9:16"
    assert sent["a square"]["duration"] == 10
    assert sent["the edge"]["voice_list"] == [{"voice_id": "v1"}, {"voice_id": "v2"}]
    assert sent["the edge"]["sound"] is True and sent["dawn"]["sound"] is False
    assert sim.stats.media_with_auth_header == 0


async def test_running_again_submits_nothing_and_the_report_rebuilds_identically(
    sim, mixed_manifest, tmp_path
):
    run_dir = tmp_path / "run"
    state, _ = await run_batch(sim, mixed_manifest, run_dir)
    write_reports(state, run_dir)
    first_report = (run_dir / REPORT_CSV).read_bytes()
    submits, polls = sim.stats.submits, sim.stats.polls
    state.close()

    state, outcome = await run_batch(sim, mixed_manifest, run_dir)
    assert outcome.created == 0
    assert (sim.stats.submits, sim.stats.polls) == (submits, polls)
    write_reports(state, run_dir)
    assert (run_dir / REPORT_CSV).read_bytes() == first_report

    report = pd.read_csv(run_dir / REPORT_CSV)
    assert list(report.columns[:18]) == [
        "task_key", "row_id", "source", "image", "prompt", "duration", "aspect_ratio", "sound",
        "status", "task_id", "attempts", "error", "video_url", "video_path", "submitted_at",
        "finished_at", "generation_s", "est_cost_usd",
    ]  # fmt: skip
    assert set(report["status"]) == {"succeeded"} and set(report["attempts"]) == {1}
    assert report.loc[report["task_key"] == "square/1", "est_cost_usd"].item() == pytest.approx(
        0.70
    )


async def test_faults_are_recovered_without_paying_twice(start_sim, tmp_path):
    sim = await start_sim(
        error_500_rate=0.15, error_503_rate=0.15, submit_limit=40, limit_window_s=1.0, seed=3
    )
    sim.script("submit", "429", "503", "500")
    sim.script("poll", "500", "502_html", "429")
    sim.script_fates("succeed", "fail")  # the second task created fails on the server
    manifest = simple_manifest(tmp_path, 20)
    state, outcome = await run_batch(
        sim, manifest, tmp_path / "run", fast_engine_config(submit_rate=Rate(30, 1))
    )

    counts = state.counts()
    assert counts == {"succeeded": 19, "failed": 1}
    assert max(sim.stats.created_by_prompt.values()) == 1  # nobody paid twice
    assert sim.stats.tasks_created == outcome.created == 20
    assert sim.stats.faults["submit:429"] >= 1 and sim.stats.faults["poll:500"] >= 1
    [failed] = state.tasks([TaskStatus.FAILED])
    assert failed.error == sim.config.fail_reason  # the API's reason, verbatim
    assert failed.task_id in sim.tasks


async def test_429s_do_not_use_up_the_retry_budget_but_errors_do(start_sim, tmp_path):
    sim = await start_sim(retry_after_s=0)
    sim.script("submit", "429", "429", "429", "503", "503")
    config = fast_engine_config(retry_limits=RetryLimits(transient=1))
    state, _ = await run_batch(sim, simple_manifest(tmp_path, 2), tmp_path / "run", config)
    # r0/1 goes alone and meets all five: three 429s (their own budget), one 503 (the one
    # retry allowed), a second 503 (budget spent): left pending, nothing paid.
    stuck = state.get("r0/1")
    assert stuck.status == TaskStatus.PENDING and "HTTP 503" in stuck.error
    assert stuck.attempts == 0
    outcomes = [a["outcome"] for a in state.attempts() if a["task_key"] == "r0/1"]
    assert outcomes == ["not_created"] * 5
    assert state.get("r1/1").status == TaskStatus.SUCCEEDED
    assert sim.stats.tasks_created == 1


async def test_a_dropped_submit_is_unknown_and_never_retried(sim, tmp_path):
    sim.script("submit", "drop_after_create")
    manifest = simple_manifest(tmp_path, 3)
    state, outcome = await run_batch(sim, manifest, tmp_path / "run")
    [unknown] = state.tasks([TaskStatus.UNKNOWN])
    assert unknown.task_key == "r0/1"  # the first submit goes alone, so it met the fault
    assert "no answer" in unknown.error
    assert unknown.attempts == 1 and unknown.task_id is None
    assert sim.stats.created_by_prompt["prompt 0"] == 1  # created once, by that one send
    assert state.counts() == {"unknown": 1, "succeeded": 2}
    state.close()

    state, outcome = await run_batch(sim, manifest, tmp_path / "run")  # run again
    assert outcome.created == 0 and sim.stats.created_by_prompt["prompt 0"] == 1


async def test_a_wrong_key_stops_after_one_request_and_the_run_resumes(sim, tmp_path):
    manifest = simple_manifest(tmp_path, 5)
    state, outcome = await run_batch(sim, manifest, tmp_path / "run", key="sk_wrong")
    assert "INVALID_API_KEY" in (outcome.stopped_by or "")
    assert sim.stats.submits == 1 and sim.stats.tasks_created == 0
    assert state.counts() == {"pending": 5}
    assert [a["outcome"] for a in state.attempts()] == ["not_created"]
    assert state.get("r0/1").attempts == 0
    state.close()

    state, outcome = await run_batch(sim, manifest, tmp_path / "run")
    assert state.counts() == {"succeeded": 5} and outcome.created == 5


async def test_a_task_past_its_deadline_is_stalled_not_failed_with_its_task_id_kept(sim, tmp_path):
    sim.script_fates("stall")
    config = fast_engine_config(
        poll_policy=PollPolicy(
            first_poll_s=0.02, min_interval_s=0.02, max_interval_s=0.05, task_timeout_s=0.3
        )
    )
    state, _ = await run_batch(sim, simple_manifest(tmp_path, 2), tmp_path / "run", config)
    stalled = state.get("r0/1")
    assert stalled.status == TaskStatus.STALLED
    assert stalled.error.startswith("stalled: past the 0.3s deadline (still TASK_STATUS_")
    assert stalled.task_id in stalled.error and stalled.task_id in sim.tasks
    assert stalled.last_answer_at is not None and "last answer from the API at" in stalled.error
    assert state.get("r1/1").status == TaskStatus.SUCCEEDED


async def test_the_deadline_makes_a_task_whose_polls_keep_failing_stalled(sim, tmp_path):
    sim.outage("poll")
    config = fast_engine_config(
        poll_policy=PollPolicy(first_poll_s=0.02, min_interval_s=0.02, task_timeout_s=0.3)
    )
    state, _ = await run_batch(sim, simple_manifest(tmp_path, 1), tmp_path / "run", config)
    record = state.get("r0/1")
    assert record.status == TaskStatus.STALLED and record.last_answer_at is None
    assert "polls failing: HTTP 503" in record.error and record.task_id in record.error
    assert "no answer from the API since the submit" in record.error

    # The outage ends: the next run polls the stalled task first and fetches its video.
    state.close()
    sim.outage("poll", on=False)
    state, outcome = await run_batch(sim, None, tmp_path / "run", config)
    assert state.get("r0/1").status == TaskStatus.SUCCEEDED and state.get("r0/1").video_path
    assert outcome.created == 0 and sim.stats.tasks_created == 1


async def test_a_lagging_task_result_is_asked_again_not_taken_for_a_failure(start_sim, tmp_path):
    sim = await start_sim(result_lag_polls=2)
    state, _ = await run_batch(sim, simple_manifest(tmp_path, 3), tmp_path / "run")
    assert state.counts() == {"succeeded": 3}
    assert sim.stats.tasks_created == 3


async def test_an_expired_video_link_is_refreshed_from_task_result(sim, tmp_path):
    sim.script("media", "403")
    state, _ = await run_batch(sim, simple_manifest(tmp_path, 1), tmp_path / "run")
    record = state.get("r0/1")
    assert record.status == TaskStatus.SUCCEEDED and record.video_path
    assert sim.stats.media_expired == 1 and sim.stats.media_requests == 2
    assert sim.stats.tasks_created == 1  # refreshed, not paid again


async def test_a_link_that_stays_expired_ends_as_expired(sim, tmp_path):
    sim.script("media", "403", "403", "403")
    state, _ = await run_batch(sim, simple_manifest(tmp_path, 1), tmp_path / "run")
    record = state.get("r0/1")
    assert record.status == TaskStatus.EXPIRED and record.video_path is None
    assert "HTTP 403" in record.error and record.task_id in sim.tasks


async def test_a_failed_download_keeps_the_task_succeeded_and_the_next_run_fetches_it(
    sim, tmp_path
):
    sim.script("media", *["500"] * 5)  # one more than the fetcher's 4 retries
    manifest = simple_manifest(tmp_path, 1)
    state, _ = await run_batch(sim, manifest, tmp_path / "run")
    record = state.get("r0/1")
    assert record.status == TaskStatus.SUCCEEDED and record.video_path is None
    assert record.error.startswith("download failed")
    assert state.missing_videos() == 1
    state.close()

    state, outcome = await run_batch(sim, manifest, tmp_path / "run")
    record = state.get("r0/1")
    assert record.video_path and record.error is None and outcome.downloaded == 1
    assert outcome.created == 0 and sim.stats.tasks_created == 1


async def test_no_download_keeps_urls_only(sim, tmp_path):
    state, outcome = await run_batch(
        sim, simple_manifest(tmp_path, 2), tmp_path / "run", fast_engine_config(download=False)
    )
    assert state.counts() == {"succeeded": 2} and outcome.downloaded == 0
    assert all(r.video_url and r.video_path is None for r in state.tasks())
    assert not (tmp_path / "run" / "videos").exists() or not any(
        (tmp_path / "run" / "videos").iterdir()
    )


async def test_interrupted_submit_becomes_unknown_and_queued_tasks_resume_polling(sim, tmp_path):
    manifest = simple_manifest(tmp_path, 3)
    run_dir = tmp_path / "run"
    planned = plan(load(manifest))
    state = RunState.open(run_dir)
    state.sync_plan(planned.tasks)
    # r0: cut off mid-POST by a crash. r1: submitted, answer recorded, then the crash.
    state.mark_submitting("r0/1")
    async with NovitaClient(sim.base_url, SIM_KEY) as client:
        task_id = await client.submit(
            "/v3/async/kling-v2.6-pro-i2v", {"image": "https://x/y.png", "prompt": "p1"}
        )
    attempt = state.mark_submitting("r1/1")
    state.mark_submitted("r1/1", attempt, task_id)
    state.close()

    state, outcome = await run_batch(sim, manifest, run_dir)
    assert outcome.resumed_unknown == 1
    assert state.get("r0/1").status == TaskStatus.UNKNOWN
    assert state.get("r1/1").status == TaskStatus.SUCCEEDED and state.get("r1/1").task_id == task_id
    assert state.get("r2/1").status == TaskStatus.SUCCEEDED
    assert outcome.created == 1  # only r2: r0 is unknown and r1 already had its task
    assert sim.stats.created_by_prompt["prompt 0"] == 0


async def test_a_task_the_api_never_knows_is_lost_not_failed(start_sim, tmp_path):
    first = await start_sim()
    manifest = simple_manifest(tmp_path, 1)
    run_dir = tmp_path / "run"
    planned = plan(load(manifest))
    state = RunState.open(run_dir)
    state.sync_plan(planned.tasks)
    attempt = state.mark_submitting("r0/1")
    state.mark_submitted("r0/1", attempt, "id-from-another-account")
    state.close()
    config = fast_engine_config(
        poll_policy=PollPolicy(
            first_poll_s=0.02,
            min_interval_s=0.02,
            max_interval_s=0.05,
            not_found_grace_s=0.1,
            task_timeout_s=0.4,
        )
    )
    state, _ = await run_batch(first, manifest, run_dir, config)
    record = state.get("r0/1")
    assert record.status == TaskStatus.LOST and record.task_id == "id-from-another-account"
    assert "Task Result did not know task id-from-another-account for" in record.error
    assert "`rerun --lost` pays again" in record.error
    assert first.stats.polls >= 3  # asked again up to the deadline before concluding


def test_the_image_is_read_once_per_run_of_tasks_and_again_when_it_changes(tmp_path):
    """Rows expanded by lists and ``repeat`` send one image many times: it is encoded
    once, and read again as soon as the file changes (size or mtime)."""
    reads: list[str] = []

    def read(reference: str) -> str:
        reads.append(reference)
        return image_payload(reference)

    images = ImageCache(read)
    frame = tmp_path / "frame.png"
    Image.new("RGB", (400, 400), (10, 20, 30)).save(frame)
    first = images.payload(str(frame))
    assert images.payload(str(frame)) == first
    assert len(reads) == 1
    Image.new("RGB", (500, 400), (90, 20, 30)).save(frame)
    second = images.payload(str(frame))
    assert second != first and base64.b64decode(second) == frame.read_bytes()
    assert len(reads) == 2
    assert images.payload("https://example.com/a.png") == "https://example.com/a.png"


async def test_a_base_url_where_nothing_answers_stops_the_run_instead_of_retrying_all_night(
    start_sim, tmp_path
):
    sim = await start_sim()
    base_url = sim.base_url
    await sim.stop()  # nothing listens there any more
    state = RunState.open(tmp_path / "run")
    state.sync_plan(plan(load(simple_manifest(tmp_path, 3))).tasks)
    config = fast_engine_config(unreachable_after_s=0.3)
    async with NovitaClient(base_url, SIM_KEY) as client:
        outcome = await run_engine(state, client, tmp_path / "run", config)
    assert isinstance(outcome.stop_error, ApiUnreachable)
    assert outcome.stopped_by.startswith(f"nothing answers at {base_url}")
    assert state.counts() == {"pending": 3}  # resumable: nothing was (or may have been) sent


async def test_a_run_whose_guard_reports_a_problem_stops(sim, tmp_path):
    """The CLI's guard says when run.lock was removed: a second run could then start."""
    sim.hold()
    state = RunState.open(tmp_path / "run")
    state.sync_plan(plan(load(simple_manifest(tmp_path, 2))).tasks)
    problems: list[str] = []
    async with NovitaClient(sim.base_url, SIM_KEY) as client:
        engine = asyncio.create_task(
            run_engine(
                state,
                client,
                tmp_path / "run",
                fast_engine_config(),
                guard=lambda: problems[0] if problems else None,
            )
        )
        while sim.stats.tasks_created < 2:
            await asyncio.sleep(0.01)
        problems.append("run.lock was removed")
        outcome = await asyncio.wait_for(engine, 10)
    assert outcome.stopped_by == "run.lock was removed"
    assert isinstance(outcome.stop_error, FolderChanged)
    assert {r.status for r in state.tasks()} <= {TaskStatus.QUEUED, TaskStatus.PROCESSING}


async def test_the_deadline_is_read_from_the_injected_clock_no_waiting(sim, tmp_path):
    """The default 30-minute deadline, passed by moving the clock, not by sleeping."""
    sim.hold()  # the API keeps every task queued
    clock = ManualClock()
    state = RunState.open(tmp_path / "run")
    state.sync_plan(plan(load(simple_manifest(tmp_path, 2))).tasks)
    config = fast_engine_config(
        poll_policy=PollPolicy(first_poll_s=0.02, min_interval_s=0.02, max_interval_s=0.05)
    )
    async with NovitaClient(sim.base_url, SIM_KEY) as client:
        engine = asyncio.create_task(
            run_engine(state, client, tmp_path / "run", config, clock=clock)
        )
        while sim.stats.polls < 4:  # both submitted, and polled while queued
            await asyncio.sleep(0.01)
        assert not engine.done()
        clock.advance(1801)
        await asyncio.wait_for(engine, 10)
    assert state.counts() == {"stalled": 2}
    assert "past the 1800s deadline (still TASK_STATUS_QUEUED)" in state.get("r0/1").error


async def test_not_found_is_asked_again_until_the_deadline_on_the_clock(start_sim, tmp_path):
    sim = await start_sim(result_lag_polls=10_000)  # Task Result never knows the tasks
    clock = ManualClock()
    state = RunState.open(tmp_path / "run")
    state.sync_plan(plan(load(simple_manifest(tmp_path, 1))).tasks)
    async with NovitaClient(sim.base_url, SIM_KEY) as client:
        engine = asyncio.create_task(
            run_engine(state, client, tmp_path / "run", fast_engine_config(), clock=clock)
        )
        while sim.stats.polls < 3:
            await asyncio.sleep(0.01)
        clock.advance(61)  # past the 60 s grace: still asked, not concluded
        polls = sim.stats.polls
        while sim.stats.polls < polls + 2:
            await asyncio.sleep(0.01)
        assert not engine.done() and state.get("r0/1").status == TaskStatus.QUEUED
        clock.advance(1800)  # past the deadline: lost
        await asyncio.wait_for(engine, 10)
    record = state.get("r0/1")
    assert record.status == TaskStatus.LOST and "TASK_NOT_FOUND" in record.error


async def test_a_large_video_is_written_whole_from_a_thread(start_sim, tmp_path):
    """A 9 MB video goes to disk in pieces as it arrives (the disk work off the event
    loop), and ends whole under its own name, with no .part left. (The remux that
    writes its tags drops the 9 MB of padding the simulator put in a ``free`` box.)"""
    sim = await start_sim(video_bytes=9_000_000)
    state, _ = await run_batch(sim, simple_manifest(tmp_path, 2), tmp_path / "run")
    assert sim.stats.media_requests == 2
    for record in state.tasks():
        video = tmp_path / "run" / record.video_path
        assert check_mp4(video).whole and video.stat().st_size == record.video_bytes
    assert not list((tmp_path / "run" / "videos").glob("*.part"))


async def test_a_first_look_goes_early_into_a_free_poll_slot(sim, tmp_path):
    """The batch so far took 30 s (as the API reports it), so a new task's first look is
    due at 30 s; with the poll budget otherwise idle it goes at ``first_poll_s``
    instead, so that first looks never pile up against the first finishes."""
    state = RunState.open(tmp_path / "run")
    planned = plan(load(simple_manifest(tmp_path, 1)))
    state.sync_plan(planned.tasks)
    task = planned.tasks[0]
    stop = StopSwitch()
    async with NovitaClient(sim.base_url, SIM_KEY) as client:
        body = task.request.body({"image": image_payload(task.request.image)})
        task_id = await client.submit(task.request.model.path, body)
        state.mark_submitted(task.key, state.mark_submitting(task.key), task_id)
        limiter = EndpointLimiter(Rate(100, 1), "poll", random.Random(1))
        policy = PollPolicy(first_poll_s=0.05, min_interval_s=0.05)
        scheduler = PollScheduler(state, client, limiter, stop, policy, lambda key: None)
        for _ in range(LEARN_AFTER):
            scheduler.durations.add(30.0)
        assert scheduler.first_delay() == 30.0
        scheduler.add(task.key, task_id, submitted_at=time.time())
        polling = asyncio.create_task(scheduler.run())
        try:
            async with asyncio.timeout(5):  # due at 30 s: only an early look is in time
                while sim.stats.polls == 0:
                    await asyncio.sleep(0.01)
        finally:
            stop.trip("test over")
            await polling
