"""Never pay twice, part 2: the ordinary nights that used to pay twice, each replayed
against a simulator on its own thread over a real socket, with the simulator's own
books as the judge of what was paid.

- two processes on one run folder;
- a poll outage longer than the deadline, then ``rerun --failed`` and ``resume``;
- the account check before spending: a wrong key, a short balance, no balance endpoint;
- rows removed from the manifest between two runs;
- nothing listening at the base URL;
- the ledger deleted while a run holds it, and results left without a ledger.
"""

from __future__ import annotations

import csv
import os
import socket
import sqlite3
from pathlib import Path

import pytest

from runner.cli.commands import main
from runner.run.lock import LOCK_FILE, RunFolderLock, lock_holder
from tests.conftest import FAST, draw_image, runner_process, wait_until, write_rows

PRICE_5S_SILENT = 0.35  # 5 s x $0.07


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    draw_image(tmp_path / "frame.png")
    return write_rows(tmp_path / "night.yaml", 6)


def statuses(run_dir: Path) -> dict[str, str]:
    with sqlite3.connect(f"file:{run_dir / 'state.sqlite'}?mode=ro", uri=True) as db:
        return dict(db.execute("SELECT task_key, status FROM tasks"))


def paid_once_per_row(sim, rows: int) -> bool:
    created = sim.stats.created_by_prompt
    return len(created) == rows and set(created.values()) == {1}


# --- one process per run folder ----------------------------------------------------


def test_a_second_process_on_a_held_folder_exits_2_at_once_naming_the_holder(
    manifest, threaded_sim, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    args = ["run", str(manifest), "--out", str(run_dir), *FAST]
    threaded_sim.script("submit", "hold_after_create")  # the first run keeps a submit in flight
    first = runner_process(args, threaded_sim, tmp_path)
    try:
        wait_until(lambda: threaded_sim.stats.submits >= 1, what="the first run's submit")

        second = runner_process(args, threaded_sim, tmp_path)
        _, err = second.communicate(timeout=30)
        assert second.returncode == 2, err
        assert f"is in use by pid {first.pid} on {socket.gethostname()}, since " in err
        assert f"kling-batch run {manifest}" in err  # the holder's command
        assert threaded_sim.stats.submits == 1  # the second process sent nothing

        # status and report take no lock: they work while the run holds the folder.
        assert main(["status", str(run_dir)]) == 0
        out = capsys.readouterr().out
        assert f"live: a run holds this folder: pid {first.pid}" in out
        assert "kling-batch resume" not in out and "wait: a run is live" in out
        assert main(["report", str(run_dir)]) == 0
    finally:
        threaded_sim.release_answers()
    _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert paid_once_per_row(threaded_sim, 6)
    assert lock_holder(run_dir) is None  # released with the process
    assert main(["status", str(run_dir)]) == 0
    assert "live:" not in capsys.readouterr().out


def test_the_lock_is_released_by_the_kernel_when_its_process_dies(tmp_path):
    """kill -9 and reboots need no clean-up: the lock goes with its holder."""
    lock = RunFolderLock.acquire(tmp_path, command="kling-batch run m.yaml")
    holder = lock_holder(tmp_path)
    assert holder is not None and holder.pid == os.getpid()
    assert holder.command == "kling-batch run m.yaml"
    lock.release()
    assert lock_holder(tmp_path) is None
    assert (tmp_path / LOCK_FILE).exists()  # left in place, and harmless


# --- a deadline is not a failure ----------------------------------------------------


def test_a_poll_outage_longer_than_the_deadline_pays_nothing_twice(
    manifest, threaded_sim, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    threaded_sim.outage("poll")  # Task Result answers 503 from the start
    args = [*FAST, "--task-timeout", "0.5"]
    assert main(["run", str(manifest), "--out", str(run_dir), *args]) == 4
    out = capsys.readouterr().out
    assert "6 task(s) stalled: still running at the API (or unanswered)" in out
    assert set(statuses(run_dir).values()) == {"stalled"}
    with (run_dir / "report.csv").open(encoding="utf-8") as report:
        rows = list(csv.DictReader(report))
    assert {r["status"] for r in rows} == {"stalled"} and all(r["task_id"] for r in rows)
    assert "no answer from the API since the submit" in rows[0]["error"]

    # What the README tells a user to do with failed rows pays for nothing here.
    assert main(["rerun", str(run_dir), "--failed", *FAST]) == 0
    assert "no task to rerun" in capsys.readouterr().out
    assert threaded_sim.stats.tasks_created == 6

    # status says what they are and what comes next.
    assert main(["status", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "stalled r0/1" in out and "last answer: none since the submit" in out
    assert "resume" in out and "poll 6 stalled again" in out

    # The outage ends: resume polls them first and fetches every video.
    threaded_sim.outage("poll", on=False)
    assert main(["resume", str(run_dir), *FAST]) == 0
    assert set(statuses(run_dir).values()) == {"succeeded"}
    assert len(list((run_dir / "videos").glob("*.mp4"))) == 6
    assert paid_once_per_row(threaded_sim, 6)


def test_rerun_asks_the_api_first_fetches_what_finished_and_leaves_what_runs(
    manifest, threaded_sim, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    threaded_sim.outage("poll")
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST, "--task-timeout", "0.3"]) == 4
    threaded_sim.outage("poll", on=False)
    ids = {}
    with sqlite3.connect(run_dir / "state.sqlite") as db:
        ids = dict(db.execute("SELECT task_key, task_id FROM tasks"))
    threaded_sim.tasks[ids["r0/1"]].fate = "fail"  # the API failed this one meanwhile
    threaded_sim.tasks[ids["r1/1"]].fate = "stall"  # and still runs this one
    capsys.readouterr()

    code = main(["rerun", str(run_dir), "--stalled", *FAST, "--task-timeout", "0.3"])
    out = capsys.readouterr().out
    assert "'stalled' task exists at the API, is billed, and may still finish" in out
    assert "4 task(s) succeeded at the API after all" in out
    assert "1 task(s) are still running at the API, so not resubmitted: r1/1" in out
    assert "1 task(s) queued again as new attempts" in out
    assert code == 4  # r1/1 is stalled again; nothing failed
    # Only the task the API said failed was paid again.
    assert threaded_sim.stats.tasks_created == 7
    assert threaded_sim.stats.created_by_prompt["prompt 0"] == 2
    final = statuses(run_dir)
    assert final["r1/1"] == "stalled" and final["r0/1"] == "succeeded"
    assert sum(s == "succeeded" for s in final.values()) == 5


# --- the account before spending ----------------------------------------------------


def test_a_short_balance_is_shown_with_how_many_tasks_it_covers(
    manifest, threaded_sim, tmp_path, capsys, monkeypatch
):
    run_dir = tmp_path / "run"
    threaded_sim.config.balance_usd = 1.0  # covers 2 of 6 tasks at $0.35
    no_yes = [a for a in FAST if a != "--yes"]
    assert main(["run", str(manifest), "--out", str(run_dir), *no_yes]) == 2
    captured = capsys.readouterr()
    assert "balance $1.00 (cash, no credit line) (the account, now)" in captured.out
    assert "the balance covers about 2 of these 6 task(s)" in captured.out
    assert "refusing to spend without --yes" in captured.err
    assert threaded_sim.stats.submits == 0

    # With --yes it goes on, and the API stops it when the money runs out (exit 3).
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 3
    assert "BILLING_BALANCE_NOT_ENOUGH" in capsys.readouterr().err
    assert threaded_sim.stats.tasks_created == 2

    # A top-up later, resume finishes; status shows the balance beside the estimate.
    threaded_sim.config.balance_usd = 10.0
    assert main(["resume", str(run_dir), *FAST]) == 0
    assert paid_once_per_row(threaded_sim, 6)
    assert main(["status", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "balance $8.60 (cash, no credit line) at " in out
    assert "($1.00 at the first run)" in out


@pytest.mark.parametrize("answer", ["missing", "denied", "garbage"])
def test_a_missing_or_odd_balance_endpoint_warns_once_and_never_blocks(
    manifest, threaded_sim, tmp_path, capsys, answer
):
    threaded_sim.config.account_answer = answer
    assert main(["run", str(manifest), "--out", str(tmp_path / "run"), *FAST]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: the balance could not be read") == 1
    assert paid_once_per_row(threaded_sim, 6)


def test_nothing_listening_at_the_base_url_stops_at_once_naming_it(
    manifest, tmp_path, monkeypatch, capsys
):
    # A port bound but not listening refuses connections, and stays ours for the whole
    # run: a port closed after probing could be taken by another worker's simulator.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
        monkeypatch.setenv("NOVITA_BASE_URL", url)
        monkeypatch.setenv("NOVITA_API_KEY", "sk_anything_1234")
        monkeypatch.setattr("runner.api.account.RETRY_DELAYS_S", (0.05, 0.05))
        run_dir = tmp_path / "run"
        assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 3
    err = capsys.readouterr().err
    assert f"stopped before any submit: nothing answers at {url}" in err
    assert f"kling-batch resume {run_dir}" in err
    assert set(statuses(run_dir).values()) == {"pending"}  # resumable, nothing sent


# --- only what the manifest asks for is sent ----------------------------------------


def test_rows_removed_from_the_manifest_are_retired_not_paid(
    manifest, threaded_sim, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    args = ["run", str(manifest), "--out", str(run_dir), *FAST]
    assert main([*args, "--budget", str(2 * PRICE_5S_SILENT)]) == 1  # 4 rows left pending
    assert threaded_sim.stats.tasks_created == 2
    capsys.readouterr()

    write_rows(manifest, 3)  # the user cuts the manifest to 3 rows
    assert main([*args, "--budget", "inf"]) == 0
    out = capsys.readouterr().out
    assert "3 task(s): 0 new, 1 to submit" in out
    assert "3 pending task(s) retired: their rows (or repeats) are no longer in the manifest" in out
    assert sorted(threaded_sim.stats.created_by_prompt) == ["prompt 0", "prompt 1", "prompt 2"]
    final = statuses(run_dir)
    assert [final[f"r{i}/1"] for i in range(3, 6)] == ["retired"] * 3
    assert main(["status", str(run_dir)]) == 0
    assert "3 retired" in capsys.readouterr().out

    write_rows(manifest, 4)  # a row comes back: it is pending again, and sent
    assert main(args) == 0
    assert statuses(run_dir)["r3/1"] == "succeeded"
    assert paid_once_per_row(threaded_sim, 4)


# --- the ledger is the run's memory: it cannot vanish unnoticed ----------------------


def test_a_ledger_deleted_while_a_run_holds_it_is_restored_and_nothing_is_paid_twice(
    manifest, threaded_sim, tmp_path
):
    run_dir = tmp_path / "run"
    threaded_sim.hold()  # tasks stay queued: the run is mid-batch when the file goes
    process = runner_process(
        ["run", str(manifest), "--out", str(run_dir), *FAST], threaded_sim, tmp_path
    )
    wait_until(lambda: threaded_sim.stats.tasks_created == 6, what="every task created")
    for suffix in ("", "-wal", "-shm"):  # what `rm state.sqlite*` does
        Path(f"{run_dir / 'state.sqlite'}{suffix}").unlink(missing_ok=True)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 3, err
    assert "state.sqlite was deleted while this run held it" in err
    assert "the ledger was restored from this process" in err

    threaded_sim.release()
    resumed = runner_process(["resume", str(run_dir), "--yes", *FAST[1:]], threaded_sim, tmp_path)
    _, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err
    assert set(statuses(run_dir).values()) == {"succeeded"}
    assert paid_once_per_row(threaded_sim, 6)


def test_results_without_a_ledger_are_refused_not_started_afresh(
    manifest, threaded_sim, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    (run_dir / "state.sqlite").unlink()
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 2
    err = capsys.readouterr().err
    assert "holds results of a run (report.csv, report.html, videos) but no ledger" in err
    assert threaded_sim.stats.tasks_created == 6


def test_resume_of_a_folder_that_is_not_a_run_folder_is_refused(tmp_path, capsys):
    assert main(["resume", str(tmp_path / "nowhere"), "--yes"]) == 2
    assert "is not a run folder (no state.sqlite)" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()  # refusing created nothing


def test_a_rehearsal_checks_its_account_and_shows_the_balance(tmp_path, quick_rehearsal, capsys):
    draw_image(tmp_path / "frame.png")
    manifest = write_rows(tmp_path / "m.yaml", 2)
    assert main(["run", str(manifest), "--simulate", "--out", str(tmp_path / "run"), *FAST]) == 0
    assert "balance $100.00 (cash, no credit line) (the account, now)" in capsys.readouterr().out
