"""The second sweep's money cases: what was paid for is polled, fetched and checked on
disk; a typo never changes the price; advice that a command gives is true. Each runs
the CLI against a simulator on its own thread, with the simulator's books as the judge.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from runner.cli.commands import main
from tests.conftest import FAST, draw_image, write_rows


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    draw_image(tmp_path / "frame.png")
    return write_rows(tmp_path / "night.yaml", 12)


def statuses(run_dir: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{run_dir / 'state.sqlite'}?mode=ro", uri=True) as db:
        return dict(db.execute("SELECT status, COUNT(*) FROM tasks GROUP BY status"))


def videos(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "videos").glob("*.mp4"))


def test_out_of_balance_stops_submitting_but_polls_and_fetches_every_paid_task(
    manifest, threaded_sim, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    threaded_sim.config.balance_usd = 2.2  # covers 6 of the 12 tasks at $0.35
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 3
    err = capsys.readouterr().err
    assert "BILLING_BALANCE_NOT_ENOUGH" in err
    assert "6 task(s) wait for a top-up" in err
    assert threaded_sim.stats.tasks_created == 6
    assert statuses(run_dir) == {"succeeded": 6, "pending": 6}
    assert len(videos(run_dir)) == 6  # every paid task polled and its video fetched

    # No top-up: resume still exits 3 and pays for nothing; after one, it finishes.
    assert main(["resume", str(run_dir), *FAST]) == 3
    assert threaded_sim.stats.tasks_created == 6
    threaded_sim.config.balance_usd = 10.0
    assert main(["resume", str(run_dir), *FAST]) == 0
    assert threaded_sim.stats.tasks_created == 12
    assert set(threaded_sim.stats.created_by_prompt.values()) == {1}


def test_resume_without_balance_still_polls_and_fetches_tasks_in_flight(
    manifest, threaded_sim, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    threaded_sim.config.balance_usd = 1.5
    threaded_sim.hold()  # the 4 created tasks stay queued: stalled at a short deadline
    args = ["run", str(manifest), "--out", str(run_dir), *FAST, "--task-timeout", "0.3"]
    assert main(args) == 3
    assert statuses(run_dir) == {"stalled": 4, "pending": 8}
    threaded_sim.release()
    assert main(["resume", str(run_dir), *FAST, "--task-timeout", "30"]) == 3
    assert statuses(run_dir) == {"succeeded": 4, "pending": 8}
    assert len(videos(run_dir)) == 4
    assert threaded_sim.stats.tasks_created == 4
    assert "8 task(s) wait for a top-up" in capsys.readouterr().err


def test_no_download_then_resume_download_makes_the_status_advice_true(
    manifest, threaded_sim, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST, "--no-download"]) == 0
    assert videos(run_dir) == []
    capsys.readouterr()
    assert main(["status", str(run_dir)]) == 0
    advice = f"kling-batch resume {run_dir} --download would download 12 video(s)"
    assert advice in capsys.readouterr().out
    assert main(["resume", str(run_dir), *FAST]) == 0  # the saved --no-download holds
    assert videos(run_dir) == []
    assert main(["resume", str(run_dir), *FAST, "--download"]) == 0
    assert len(videos(run_dir)) == 12
    assert threaded_sim.stats.tasks_created == 12
    assert main(["status", str(run_dir)]) == 0
    assert "every video is here" in capsys.readouterr().out


def test_expired_links_are_refreshed_free_by_resume_before_any_rerun(
    tmp_path, threaded_sim, capsys
):
    draw_image(tmp_path / "frame.png")
    manifest = write_rows(tmp_path / "two.yaml", 2)
    run_dir = tmp_path / "run"
    threaded_sim.script("media", *["403"] * 6)  # each first link and both refreshes fail
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 1
    assert statuses(run_dir) == {"expired": 2}
    out = capsys.readouterr().out
    assert "resume" in out and "asks for fresh links first (free)" in out
    assert main(["status", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "ask for a fresh link to 2 expired video(s) (free)" in out
    assert "pays again: resume first asks for a fresh link" in out

    assert main(["resume", str(run_dir), *FAST]) == 0
    assert statuses(run_dir) == {"succeeded": 2}
    assert len(videos(run_dir)) == 2
    assert threaded_sim.stats.tasks_created == 2  # nothing paid again


@pytest.mark.parametrize("change", ["delete", "replace"])
def test_a_video_deleted_or_replaced_after_success_is_said_and_fetched_again(
    tmp_path, threaded_sim, capsys, change
):
    draw_image(tmp_path / "frame.png")
    manifest = write_rows(tmp_path / "three.yaml", 3)
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    video = run_dir / "videos" / "r1_1.mp4"
    whole = video.read_bytes()
    if change == "delete":
        video.unlink()
    else:
        video.write_bytes(whole[: len(whole) // 2])  # a copy that stopped halfway
    capsys.readouterr()
    assert main(["status", str(run_dir), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["videos_missing"] == 1
    assert "download 1 video(s)" in " ".join(summary["next_steps"])

    assert main(["resume", str(run_dir), *FAST]) == 0
    assert video.read_bytes() == whole
    assert threaded_sim.stats.tasks_created == 3
