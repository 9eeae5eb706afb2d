"""kill -9 at any moment, resume, and account for every cent with the simulator's books.

A 60-row batch runs against a simulator with every fault on (429s from a server-side
limit below the client's rate, 500s, 503s, dropped-after-create, failed and stalled
tasks). The runner process is killed with SIGKILL five times: while submitting, while a
submit it sent is waiting for its answer, while downloading, and twice at random
moments (seeded). Then ``resume`` finishes the batch, and the simulator's own records,
not the runner's, decide whether anything was paid twice or lost.
"""

from __future__ import annotations

import contextlib
import csv
import json
import random
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from runner.media.mp4 import Mp4Check, check_mp4
from runner.simulator import SimConfig, Simulator, simulator_in_thread
from tests.conftest import SIM_KEY, draw_image, runner_process, wait_until

ROWS = 60
FINAL = {"succeeded", "failed", "unknown", "expired", "stalled"}
RUN_ARGS = [
    "--yes",
    "--submit-rate",
    "40/s",  # above the server's 10/s: the runner must live with 429s
    "--poll-rate",
    "200/s",
    "--first-poll-s",
    "0.2",
    "--task-timeout",
    "5",  # tasks the simulator never finishes end as `stalled` within the test
    # The scripted first fates (a failure, a stall) would hold a canary's model: this
    # test is about kill -9 under every fault; test_canary kills a run mid-canary.
    "--canary",
    "off",
]


@pytest.fixture
def faulty_sim() -> Simulator:
    config = SimConfig(
        api_key=SIM_KEY,
        queue_s=0.2,
        generation_s=0.5,
        jitter=0.5,
        fail_rate=0.08,
        stall_rate=0.04,
        error_500_rate=0.04,
        error_503_rate=0.04,
        drop_after_create_rate=0.04,
        submit_limit=10,
        limit_window_s=1.0,
        seed=20261124,
    )
    with simulator_in_thread(config) as sim:
        yield sim


def write_manifest(folder: Path) -> Path:
    draw_image(folder / "frame.png")
    rows = "\n".join(
        f"  - {{id: row{i:02d}, image: frame.png, prompt: 'night shot {i:02d}'}}"
        for i in range(ROWS)
    )
    path = folder / "overnight.yaml"
    path.write_text(f"defaults: {{sound: false}}\nrows:\n{rows}\n", encoding="utf-8")
    return path


def ledger(run_dir: Path) -> list[sqlite3.Row]:
    db = sqlite3.connect(run_dir / "state.sqlite", timeout=30)
    db.row_factory = sqlite3.Row
    try:
        return db.execute("SELECT * FROM tasks ORDER BY position").fetchall()
    finally:
        db.close()


def kill_when(process: subprocess.Popen[str], condition, what: str) -> None:
    wait_until(lambda: condition() or process.poll() is not None, what=what)
    assert process.poll() is None, f"the run ended before {what}: nothing was killed"
    process.kill()  # SIGKILL: no handler, no cleanup, no flush
    process.wait(timeout=10)


def kill_after(process: subprocess.Popen[str], seconds: float) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=seconds)
    process.kill()  # a no-op if it already ended
    process.wait(timeout=10)


def test_kill_9_anywhere_then_resume_pays_once_and_loses_nothing(faulty_sim, tmp_path):
    sim, rng = faulty_sim, random.Random(7)
    manifest, run_dir = write_manifest(tmp_path), tmp_path / "run"
    run = ["run", str(manifest), "--out", str(run_dir), *RUN_ARGS]
    videos = run_dir / "videos"

    def video_count() -> int:
        return len(list(videos.glob("*.mp4"))) if videos.is_dir() else 0

    sim.script_fates("fail", "stall")  # at least one of each, whatever the timing
    # 1. In the middle of submitting.
    kill_when(runner_process(run, sim, tmp_path), lambda: sim.stats.tasks_created >= 10, "10")
    # 2. While a submit it sent waits for its answer: the worst moment for money.
    sim.script("submit", "hang_after_create")
    hung = lambda: sim.stats.faults["submit:hang_after_create"] == 1  # noqa: E731
    kill_when(runner_process(run, sim, tmp_path), hung, "the hung submit")
    # 3. At a random moment.
    kill_after(runner_process(run, sim, tmp_path), rng.uniform(0.5, 1.5))
    # 4. While videos are being written.
    before = video_count()
    kill_when(runner_process(run, sim, tmp_path), lambda: video_count() >= before + 3, "videos")
    # 5. At another random moment, then resume to the end.
    kill_after(
        runner_process(["resume", str(run_dir), "--yes"], sim, tmp_path), rng.uniform(0.3, 1)
    )
    final = runner_process(["resume", str(run_dir), "--yes"], sim, tmp_path)
    _, err = final.communicate(timeout=60)
    assert final.returncode == 1, err  # some failed or unknown: the fault rates see to it

    tasks = ledger(run_dir)
    by_prompt = {t["task_key"]: _prompt(t) for t in tasks}
    statuses = Counter(t["status"] for t in tasks)
    assert len(tasks) == ROWS and set(statuses) <= FINAL, statuses
    assert statuses["succeeded"] > ROWS // 2 and statuses["failed"] and statuses["unknown"]

    # Paid at most once per row, by the simulator's count. Stronger than "except the
    # unknown ones": an unknown task is never sent again without `rerun --unknown`.
    created = sim.stats.created_by_prompt
    assert max(created.values()) == 1
    # Every task the API created is in the ledger under its id, or its row is `unknown`.
    ids = {t["task_id"]: t for t in tasks if t["task_id"]}
    unknown_prompts = {by_prompt[t["task_key"]] for t in tasks if t["status"] == "unknown"}
    for task_id, sim_task in list(sim.tasks.items()):
        if task_id in ids:
            assert _prompt(ids[task_id]) == sim_task.prompt
        else:
            assert sim_task.prompt in unknown_prompts, f"paid task {task_id} was lost"
    # Every success has its whole video; no half-written file is left behind.
    for task in tasks:
        if task["status"] == "succeeded":  # a real 5 s H.264 file, every box in place
            assert check_mp4(run_dir / task["video_path"], 5) == Mp4Check(True, 5.0)
    assert not list(videos.glob("*.part"))
    with (run_dir / "report.csv").open(encoding="utf-8") as report:
        assert Counter(r["status"] for r in csv.DictReader(report)) == statuses

    # The failed rows, as a manifest, are accepted by validate unchanged.
    retryable = [t for t in tasks if t["status"] in ("failed", "expired")]
    checked = subprocess.run(
        [sys.executable, "-m", "runner", "validate", str(run_dir / "failed.yaml")],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr
    assert f"OK, {len(retryable)} task(s)" in checked.stdout

    # rerun --failed: exactly one new task per failed row, and none for any other row
    # (stalled ones included: they exist at the API and are billed).
    # (Submit faults off, so that "exactly one" does not depend on retries running out.)
    for name in ("error_500_rate", "error_503_rate", "drop_after_create_rate"):
        setattr(sim.config, name, 0.0)
    sim.config.fail_rate = sim.config.stall_rate = 0.0
    failed = [t for t in tasks if t["status"] == "failed"]
    before_rerun = Counter(created)
    rerun = runner_process(["rerun", str(run_dir), "--failed", "--yes"], sim, tmp_path)
    _, err = rerun.communicate(timeout=60)
    new = Counter(sim.stats.created_by_prompt) - before_rerun
    assert new == Counter(_prompt(t) for t in failed), err
    after = {t["task_key"]: t for t in ledger(run_dir)}
    for task in failed:
        assert after[task["task_key"]]["status"] == "succeeded"
        assert after[task["task_key"]]["attempts"] == task["attempts"] + 1


def _prompt(task: sqlite3.Row) -> str:
    return json.loads(task["request_json"])["prompt"]
