"""Exits that tell the truth: a reader that goes away, SIGTERM at the question, a
damaged ledger. Each runs the real process (or the CLI) against a simulator and checks
the exit code, what was written to the run folder and what the simulator was paid."""

from __future__ import annotations

import os
import pty
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from runner.cli.commands import main
from tests.conftest import FAST, SIM_KEY, draw_image, runner_process, wait_until, write_rows


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    draw_image(tmp_path / "frame.png")
    return write_rows(tmp_path / "night.yaml", 12)


@pytest.mark.parametrize(("fail_rate", "code"), [(0.0, 0), (1.0, 1)])
def test_a_reader_that_goes_away_neither_stops_the_batch_nor_changes_its_exit(
    manifest, threaded_sim, tmp_path, fail_rate, code
):
    """``kling-batch run ... | head -1``: both pipes closed before the first line."""
    threaded_sim.config.fail_rate = fail_rate
    run_dir = tmp_path / "run"
    process = runner_process(
        ["run", str(manifest), "--out", str(run_dir), *FAST], threaded_sim, tmp_path
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    process.stderr.close()
    assert process.wait(timeout=60) == code
    assert threaded_sim.stats.tasks_created == 12
    assert (run_dir / "report.csv").is_file()
    log = (run_dir / "run.log").read_text(encoding="utf-8")
    assert "r11/1: submitted as task" in log


def test_sigterm_at_the_question_is_a_no_that_leaves_a_clean_folder(
    manifest, threaded_sim, tmp_path
):
    run_dir = tmp_path / "run"
    leader, follower = pty.openpty()  # a terminal, so that run asks instead of refusing
    env = {**os.environ, "NOVITA_BASE_URL": threaded_sim.base_url, "NOVITA_API_KEY": SIM_KEY}
    args = [a for a in FAST if a != "--yes"]
    process = subprocess.Popen(
        [sys.executable, "-m", "runner", "run", str(manifest), "--out", str(run_dir), *args],
        cwd=tmp_path,
        env=env,
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(follower)
    try:
        assert process.stdout is not None
        seen = b""
        while b"[y/N]" not in seen:  # input() flushes the question before it waits
            chunk = os.read(process.stdout.fileno(), 1024)
            assert chunk, "the process ended before it asked"
            seen += chunk
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        os.close(leader)
    assert process.returncode == 2, err
    assert "declined: nothing was sent" in err and "Traceback" not in err
    assert threaded_sim.stats.submits == 0
    assert not (run_dir / "state.sqlite-wal").exists()
    assert not (run_dir / "state.sqlite-shm").exists()


def test_sigterm_while_the_batch_runs_is_exit_130_and_resumable(manifest, threaded_sim, tmp_path):
    run_dir = tmp_path / "run"
    threaded_sim.hold()
    process = runner_process(
        ["run", str(manifest), "--out", str(run_dir), *FAST], threaded_sim, tmp_path
    )
    wait_until(lambda: threaded_sim.stats.tasks_created == 12, what="every submit")
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "kling-batch resume" in err
    threaded_sim.release()
    assert main(["resume", str(run_dir), *FAST]) == 0
    assert threaded_sim.stats.tasks_created == 12


def test_a_damaged_ledger_is_said_exit_2_and_nothing_is_sent(
    manifest, threaded_sim, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    ledger = run_dir / "state.sqlite"
    (run_dir / "state.sqlite.rescued-20261201-010203").write_bytes(ledger.read_bytes())
    ledger.write_bytes(b"\x00garbage" * 512)
    created = threaded_sim.stats.tasks_created
    for command in (
        ["resume", str(run_dir), *FAST],
        ["run", str(manifest), "--out", str(run_dir), *FAST],
        ["status", str(run_dir)],
    ):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert f"the ledger {ledger} is damaged" in err
        assert "nothing was sent" in err and "state.sqlite.rescued-20261201-010203" in err
        assert "internal error" not in err
    assert threaded_sim.stats.tasks_created == created
    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(ledger).execute("SELECT 1 FROM tasks").close()
