"""Ctrl-C, SIGTERM and SIGHUP (a closed terminal) sent to a real ``kling-batch`` process.

The simulator holds a submit's answer at the moment the signal arrives, so the test
knows a POST is in flight without guessing at timing: the first signal must let that
answer arrive (its task id is saved, not lost to ``unknown``); a second signal must
quit at once. Either way ``resume`` finishes the batch without paying twice.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from runner.simulator import SimConfig, Simulator, simulator_in_thread
from tests.conftest import FAST, SIM_KEY, draw_image, runner_process, wait_until, write_rows

ROWS = 6


@pytest.fixture
def sim() -> Simulator:
    config = SimConfig(api_key=SIM_KEY, queue_s=0.05, generation_s=0.1, jitter=0)
    with simulator_in_thread(config) as sim:
        yield sim


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    draw_image(tmp_path / "frame.png")
    return write_rows(tmp_path / "night.yaml", ROWS)


def ledger(run_dir: Path) -> dict[str, sqlite3.Row]:
    with sqlite3.connect(f"file:{run_dir / 'state.sqlite'}?mode=ro", uri=True) as db:
        db.row_factory = sqlite3.Row
        return {r["task_key"]: r for r in db.execute("SELECT * FROM tasks")}


def read_stderr_until(process: subprocess.Popen[str], text: str) -> str:
    """Read the runner's stderr up to the line that has ``text`` (it has handled the signal)."""
    seen = []
    for line in process.stderr:
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"{text!r} never printed; stderr was:\n{''.join(seen)}")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_lets_the_sent_submit_answer_saves_its_id_and_exits_130(
    sim, manifest, tmp_path, signum
):
    run_dir = tmp_path / "run"
    sim.script("submit", "hold_after_create")  # the first submit (it goes alone) waits
    process = runner_process(["run", str(manifest), "--out", str(run_dir), *FAST], sim, tmp_path)
    wait_until(lambda: sim.stats.faults["submit:hold_after_create"] == 1, what="the held submit")

    process.send_signal(signum)
    read_stderr_until(process, "no new submits")
    sim.release_answers()  # the POST in flight now gets its answer
    _, err = process.communicate(timeout=30)

    assert process.returncode == 130
    assert f"kling-batch resume {run_dir}" in err
    tasks = ledger(run_dir)
    assert tasks["r0/1"]["status"] == "queued" and tasks["r0/1"]["task_id"]  # saved, not unknown
    assert {t["status"] for k, t in tasks.items() if k != "r0/1"} == {"pending"}
    assert sim.stats.tasks_created == 1  # nothing was started after the signal

    resumed = runner_process(["resume", str(run_dir), "--yes"], sim, tmp_path)
    assert resumed.wait(timeout=30) == 0, resumed.stderr.read()
    assert {t["status"] for t in ledger(run_dir).values()} == {"succeeded"}
    assert sim.stats.created_by_prompt == {f"prompt {i}": 1 for i in range(ROWS)}
    assert len(list((run_dir / "videos").glob("*.mp4"))) == ROWS


def test_a_second_ctrl_c_quits_at_once_and_the_abandoned_submit_is_unknown(sim, manifest, tmp_path):
    run_dir = tmp_path / "run"
    sim.script("submit", "hang_after_create")  # created, and the answer never comes
    process = runner_process(["run", str(manifest), "--out", str(run_dir), *FAST], sim, tmp_path)
    wait_until(lambda: sim.stats.faults["submit:hang_after_create"] == 1, what="the hung submit")

    process.send_signal(signal.SIGINT)
    read_stderr_until(process, "no new submits")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=10)  # well before the client's 120 s submit timeout

    assert process.returncode == 130
    assert "stopped at once" in err and f"kling-batch resume {run_dir}" in err
    first = ledger(run_dir)["r0/1"]
    assert first["status"] == "unknown"
    assert first["error"] == "interrupted while the submit was in flight"
    assert (run_dir / "report.csv").is_file()

    resumed = runner_process(["resume", str(run_dir), "--yes"], sim, tmp_path)
    assert resumed.wait(timeout=30) == 1  # one task is unknown: not everything succeeded
    statuses = {k: t["status"] for k, t in ledger(run_dir).items()}
    assert statuses == {"r0/1": "unknown", **{f"r{i}/1": "succeeded" for i in range(1, ROWS)}}
    # The unknown task was created once and never sent again.
    assert sim.stats.created_by_prompt == {f"prompt {i}": 1 for i in range(ROWS)}


def test_a_hang_up_sends_the_alert_and_the_answer_in_flight_is_kept(
    sim, manifest, tmp_path, receiver
):
    """The SSH session closed mid-run: a hang-up is Ctrl-C, and the owner is told."""
    run_dir = tmp_path / "run"
    sim.script("submit", "hold_after_create")
    args = ["run", str(manifest), "--out", str(run_dir), *FAST, "--notify", receiver.url]
    process = runner_process(args, sim, tmp_path)
    wait_until(lambda: sim.stats.faults["submit:hold_after_create"] == 1, what="the held submit")
    process.send_signal(signal.SIGHUP)
    read_stderr_until(process, "no new submits")
    sim.release_answers()
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert ledger(run_dir)["r0/1"]["status"] == "queued"  # paid, and its id kept
    assert len(receiver.received) == 1
    alert = receiver.received[0]
    assert "stopped: interrupted by SIGHUP" in alert["title"], alert
    assert "would submit 5 pending, poll 1 in flight" in alert["message"]
