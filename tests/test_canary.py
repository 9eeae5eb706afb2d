"""The canary (issue 28, item 1): a run folder's first task of each model goes alone and
the rest wait for its video; a failed canary gets one more, then holds its model; a
passed one is not repeated; a run cut off mid-canary sends no second one. Each case
runs the CLI against a simulator on its own thread, the simulator's books the judge."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.cli.commands import main
from tests.conftest import (
    CANARY_FAST,
    draw_image,
    ledger_statuses,
    runner_process,
    wait_until,
    write_rows,
)


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    draw_image(tmp_path / "frame.png")
    return write_rows(tmp_path / "night.yaml", 6)


statuses = ledger_statuses


def polls_go_on(sim, more: int = 2) -> None:
    """Wait until the runner has polled ``more`` times: long enough to have sent what a
    wrong gate would let through (the simulator holds every task meanwhile)."""
    start = sim.stats.polls
    wait_until(lambda: sim.stats.polls >= start + more, what=f"{more} more polls")


def test_the_canary_goes_alone_and_the_rest_wait_for_its_video(manifest, threaded_sim, tmp_path):
    run_dir = tmp_path / "run"
    threaded_sim.hold()  # every task stays queued: the canary's video does not come
    process = runner_process(
        ["run", str(manifest), "--out", str(run_dir), *CANARY_FAST], threaded_sim, tmp_path
    )
    wait_until(lambda: threaded_sim.stats.tasks_created == 1, what="the canary")
    polls_go_on(threaded_sim)
    assert threaded_sim.stats.submits == 1 and threaded_sim.stats.tasks_created == 1
    threaded_sim.release()
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "r0/1: sent alone as the canary of kling-v2.6-pro-i2v; the other 5 task(s)" in err
    assert "once its video is here (--canary off skips this)" in err
    assert "the canary r0/1 passed (its video is here, whole)" in err
    assert set(threaded_sim.stats.created_by_prompt.values()) == {1}
    assert len(threaded_sim.stats.created_by_prompt) == 6


def test_canary_accepted_lets_the_rest_go_once_the_api_made_it(manifest, threaded_sim, tmp_path):
    threaded_sim.hold()
    args = [
        "run",
        str(manifest),
        "--out",
        str(tmp_path / "run"),
        *CANARY_FAST,
        "--canary",
        "accepted",
    ]
    process = runner_process(args, threaded_sim, tmp_path)
    wait_until(lambda: threaded_sim.stats.tasks_created == 6, what="every task, while held")
    threaded_sim.release()
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "once the API takes it" in err


def test_each_model_has_its_canary_side_by_side(threaded_sim, tmp_path):
    draw_image(tmp_path / "frame.png")
    manifest = tmp_path / "models.yaml"
    manifest.write_text(
        "rows:\n"
        "  - {id: a, image: frame.png, prompt: 'a cat', model: kling-v2.6-pro-i2v, repeat: 3}\n"
        "  - {id: o, image: frame.png, prompt: 'a dog', model: kling-o1-i2v, repeat: 3}\n"
        "  - {id: t, prompt: 'a city at night', model: kling-v2.1-t2v-master, repeat: 2}\n",
        encoding="utf-8",
    )
    threaded_sim.hold()
    process = runner_process(
        ["run", str(manifest), "--out", str(tmp_path / "run"), *CANARY_FAST], threaded_sim, tmp_path
    )
    wait_until(lambda: threaded_sim.stats.tasks_created == 3, what="one canary per model")
    polls_go_on(threaded_sim)
    assert sorted(threaded_sim.stats.created_by_model.values()) == [1, 1, 1]
    threaded_sim.release()
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert dict(threaded_sim.stats.created_by_model) == {
        "kling-v2.6-pro-i2v": 3,
        "kling-o1-i2v": 3,
        "kling-v2.1-t2v-master": 2,
    }


def test_a_passed_canary_is_not_repeated_by_resume_or_a_longer_manifest(
    threaded_sim, tmp_path, capsys
):
    draw_image(tmp_path / "frame.png")
    run_dir = tmp_path / "run"
    assert (
        main(
            [
                "run",
                str(write_rows(tmp_path / "night.yaml", 2)),
                "--out",
                str(run_dir),
                *CANARY_FAST,
            ]
        )
        == 0
    )
    capsys.readouterr()
    threaded_sim.hold()  # were a second canary sent, the rest would wait for its video
    longer = write_rows(tmp_path / "night.yaml", 6)
    process = runner_process(
        ["run", str(longer), "--out", str(run_dir), *CANARY_FAST], threaded_sim, tmp_path
    )
    wait_until(lambda: threaded_sim.stats.tasks_created == 6, what="the four new rows at once")
    threaded_sim.release()
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "canary" not in err


def test_a_run_killed_while_its_canary_runs_sends_no_second_canary(
    manifest, threaded_sim, tmp_path
):
    run_dir = tmp_path / "run"
    threaded_sim.hold()
    first = runner_process(
        ["run", str(manifest), "--out", str(run_dir), *CANARY_FAST], threaded_sim, tmp_path
    )
    # Its task id in the ledger (killed before the answer, it would be `unknown`, and
    # a second canary right: nothing that may be paid is sent again).
    wait_until(lambda: "queued" in statuses(run_dir).values(), what="the canary's task id")
    first.kill()  # SIGKILL while the canary is queued at the API
    first.communicate()
    resumed = runner_process(["resume", str(run_dir), "--yes"], threaded_sim, tmp_path)
    polls_go_on(threaded_sim, 2)  # the resumed run polls the canary it already has
    assert threaded_sim.stats.tasks_created == 1
    threaded_sim.release()
    _, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err
    assert set(threaded_sim.stats.created_by_prompt.values()) == {1}
    assert len(threaded_sim.stats.created_by_prompt) == 6


def test_a_failed_canary_gets_one_more_then_the_rest_go(manifest, threaded_sim, tmp_path, capsys):
    run_dir = tmp_path / "run"
    threaded_sim.script_fates("fail")  # the first task made fails (not for its picture)
    assert main(["run", str(manifest), "--out", str(run_dir), *CANARY_FAST]) == 1
    err = capsys.readouterr().err
    assert "the canary r0/1 ended failed: TASK_FAILED" in err
    assert "The next task goes as a second canary; if it fails too, kling-v2.6-pro-i2v stops" in err
    assert "r1/1: sent alone as the canary" in err
    assert threaded_sim.stats.tasks_created == 6  # r0 once (failed), the rest once each
    assert sorted(statuses(run_dir).values()) == ["failed"] + ["succeeded"] * 5


def test_two_failed_canaries_hold_the_model_with_nothing_more_paid(
    manifest, threaded_sim, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    threaded_sim.script_fates("fail", "fail")
    assert main(["run", str(manifest), "--out", str(run_dir), *CANARY_FAST]) == 1
    captured = capsys.readouterr()
    assert threaded_sim.stats.tasks_created == 2  # at most two billed tasks
    assert sorted(statuses(run_dir).values()) == ["failed", "failed"] + ["pending"] * 4
    assert "kling-v2.6-pro-i2v: the canary r1/1 ended failed" in captured.err
    assert "its tasks are held pending, nothing more is paid for them" in captured.err
    assert "4 task(s) of kling-v2.6-pro-i2v held by its canary" in captured.out
    # A person looked: resume sends a new canary, which passes, and the rest follow.
    assert main(["resume", str(run_dir), *CANARY_FAST]) == 1  # the two failed stay failed
    assert threaded_sim.stats.tasks_created == 6
    assert sorted(statuses(run_dir).values()) == ["failed", "failed"] + ["succeeded"] * 4
