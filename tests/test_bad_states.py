"""Bad machine states and odd moments meet a message and a documented exit code, never a
traceback: a full disk, a folder read by `status` without being written, Ctrl-D at the
question, a busy port, and a bug (exit 70, the traceback kept in run.log)."""

from __future__ import annotations

import io
import logging
import resource
import signal
import socket
import sqlite3
import sys
from pathlib import Path

import pytest

from runner.cli.commands import main
from runner.core.crash import machine_problem
from runner.core.exits import EXIT_INTERNAL
from runner.core.logs import console_to, setup_logging
from tests.conftest import FAST, draw_image, runner_process, write_rows

ROWS = 30


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    draw_image(tmp_path / "frame.png")
    return write_rows(tmp_path / "night.yaml", ROWS)


def write_at_most(limit_bytes: int):
    """A real limit on what the child may write (RLIMIT_FSIZE): past it every write
    fails, as on a full disk, without needing a small file system mounted."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return apply


def test_a_full_disk_mid_run_is_one_line_exit_3_and_resume_finishes_paying_once(
    manifest, threaded_sim, tmp_path
):
    run_dir = tmp_path / "run"
    args = ["run", str(manifest), "--out", str(run_dir), "--submit-rate", "50/s", *FAST[3:]]
    process = runner_process([*args, "--yes"], threaded_sim, tmp_path, write_at_most(150_000))
    _, err = process.communicate(timeout=60)
    assert process.returncode == 3, err
    assert "Traceback" not in err
    assert "stopped: the disk is full (or failed) where the run folder is" in err
    assert f"to continue: kling-batch resume {run_dir}" in err

    resumed = runner_process(["resume", str(run_dir), "--yes"], threaded_sim, tmp_path)
    _, err = resumed.communicate(timeout=60)
    assert resumed.returncode in (0, 1), err  # 1: a task cut off mid-submit is unknown
    created = threaded_sim.stats.created_by_prompt
    assert max(created.values()) == 1  # nothing paid twice
    with sqlite3.connect(run_dir / "state.sqlite") as db:
        statuses = {s for (s,) in db.execute("SELECT status FROM tasks")}
    assert statuses <= {"succeeded", "unknown"}


def test_machine_problems_are_found_inside_task_groups():
    grouped = ExceptionGroup("engine", [sqlite3.OperationalError("database or disk is full")])
    assert "the disk is full" in machine_problem(grouped)
    assert "cannot be written" in machine_problem(PermissionError(13, "Permission denied"))
    assert machine_problem(ValueError("a bug")) is None


def test_status_and_report_read_a_finished_run_without_writing_its_ledger(
    manifest, threaded_sim, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    ledger = run_dir / "state.sqlite"
    before = (ledger.read_bytes(), sorted(p.name for p in run_dir.iterdir()))
    assert main(["status", str(run_dir)]) == 0
    assert f"{ROWS}/{ROWS} done" in capsys.readouterr().out
    assert (ledger.read_bytes(), sorted(p.name for p in run_dir.iterdir())) == before


def test_an_old_ledger_without_the_newest_columns_reads_as_before(manifest, threaded_sim, tmp_path):
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    with sqlite3.connect(run_dir / "state.sqlite") as db:
        db.execute("ALTER TABLE tasks DROP COLUMN last_answer_at")
    assert main(["status", str(run_dir), "--json"]) == 0  # read-only: no column added
    assert main(["report", str(run_dir)]) == 0


class _Terminal(io.StringIO):
    """A terminal whose user answers the question with ``key`` (Ctrl-D or Ctrl-C)."""

    def __init__(self, key: type[BaseException]):
        super().__init__("")
        self.key = key

    def isatty(self) -> bool:
        return True

    def readline(self, *args: object) -> str:
        raise self.key


@pytest.mark.parametrize("key", [EOFError, KeyboardInterrupt], ids=["ctrl-d", "ctrl-c"])
def test_ctrl_d_or_ctrl_c_at_the_question_declines_and_sends_nothing(
    manifest, threaded_sim, tmp_path, monkeypatch, capsys, key
):
    monkeypatch.setattr(sys, "stdin", _Terminal(key))
    no_yes = [a for a in FAST if a != "--yes"]
    assert main(["run", str(manifest), "--out", str(tmp_path / "run"), *no_yes]) == 2
    assert "declined: nothing was sent" in capsys.readouterr().err
    assert threaded_sim.stats.submits == 0


def test_a_busy_port_for_the_simulator_is_a_message(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["sim", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"the simulator cannot listen on 127.0.0.1:{port}" in err and "--port" in err


def test_a_bug_is_one_line_exit_70_and_its_traceback_is_in_run_log(
    manifest, threaded_sim, tmp_path, monkeypatch, capsys
):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the report")

    monkeypatch.setattr("runner.cli.spending.write_reports", broken)
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: a bug in the report" in err
    assert f"the traceback is in {run_dir / 'run.log'}" in err and "Traceback" not in err
    assert "Traceback (most recent call last)" in (run_dir / "run.log").read_text()


def test_restoring_the_console_after_a_live_panel_keeps_logging_working(tmp_path, capsys):
    """A live panel on stderr points the console at the stream it already has; restoring
    must not leave it writing to None ('--- Logging error ---' on every Ctrl-C)."""
    setup_logging(None)
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler))
    restore = console_to(handler.stream)
    restore()
    logging.getLogger("kling_batch.test").warning("still printed")
    err = capsys.readouterr().err
    assert "still printed" in err and "Logging error" not in err
