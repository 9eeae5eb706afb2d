"""First contact, money: answers that leave open whether a task was made are never
resent, and a task id Task Result does not know is never called failed. Each case runs
against a simulator that plays the reading our docs leave open, with its books as the
judge of what was paid (issue 28, item 3)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from runner.api.client import NovitaClient
from runner.cli.commands import main
from runner.core.clock import ManualClock
from runner.core.records import TaskStatus
from runner.engine.wiring import run_engine
from runner.ledger.transitions import RunState
from runner.manifest.files import load
from runner.manifest.plan import plan
from tests.conftest import (
    FAST,
    SIM_KEY,
    draw_image,
    fast_engine_config,
    ledger_statuses,
    write_rows,
)


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    draw_image(tmp_path / "frame.png")
    return write_rows(tmp_path / "night.yaml", 5)


statuses = ledger_statuses


@pytest.mark.parametrize("fault", ["500_after_create", "502_html"])
def test_a_5xx_after_the_task_was_made_is_unknown_and_never_paid_twice(
    manifest, threaded_sim, tmp_path, capsys, fault
):
    """BILLING_FAILED (and a gateway's HTML 502) may follow a created, billed task."""
    run_dir = tmp_path / "run"
    threaded_sim.script("submit", fault, fault)
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 1
    assert threaded_sim.stats.tasks_created == 5  # the two answered 5xx were made too
    assert set(threaded_sim.stats.created_by_prompt.values()) == {1}  # none paid twice
    assert sorted(statuses(run_dir).values()).count("unknown") == 2
    capsys.readouterr()
    assert main(["rerun", str(run_dir), "--failed", *FAST]) == 0  # nothing failed
    assert threaded_sim.stats.tasks_created == 5


async def test_a_task_result_minutes_behind_finishes_every_task_once(start_sim, tmp_path):
    """Task Result knows a new task only three minutes after it was made: the tasks
    exist and run all along, so they are asked about until they turn up."""
    sim = await start_sim(result_lag_s=180)
    draw_image(tmp_path / "frame.png")
    state = RunState.open(tmp_path / "run")
    state.sync_plan(plan(load(write_rows(tmp_path / "night.yaml", 5))).tasks)
    clock = ManualClock()
    async with NovitaClient(sim.base_url, SIM_KEY) as client:
        engine = asyncio.create_task(
            run_engine(state, client, tmp_path / "run", fast_engine_config(), clock=clock)
        )
        while sim.stats.polls < 15:  # 404s, asked again
            await asyncio.sleep(0.01)
        clock.advance(120)  # past the 60 s grace: asked again, more slowly
        polls = sim.stats.polls
        while sim.stats.polls < polls + 5:
            await asyncio.sleep(0.01)
        assert state.counts() == {"queued": 5}  # none called failed or lost
        sim.advance(181)  # Task Result catches up
        outcome = await asyncio.wait_for(engine, 20)
    assert outcome.counts == {"succeeded": 5}
    assert sim.stats.tasks_created == 5 and set(sim.stats.created_by_prompt.values()) == {1}


def test_a_task_result_never_knows_lost_tasks_until_resume_finds_and_fetches_them(
    manifest, threaded_sim, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    threaded_sim.config.result_lag_polls = 10_000  # Task Result knows none of them
    args = ["--task-timeout", "0.5"]
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST, *args]) == 1
    assert set(statuses(run_dir).values()) == {"lost"}
    out = capsys.readouterr().out
    assert "5 task(s) lost: the API gave them task ids that Task Result never knew" in out

    assert main(["status", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "ask Task Result about 5 lost again" in out
    assert "rerun outputs" not in out and "--lost would resubmit 5 lost task(s)" in out

    assert main(["rerun", str(run_dir), "--failed", *FAST]) == 0  # lost is not failed
    assert threaded_sim.stats.tasks_created == 5

    threaded_sim.config.result_lag_polls = 0  # Task Result caught up overnight
    assert main(["resume", str(run_dir), *FAST]) == 0
    assert set(statuses(run_dir).values()) == {"succeeded"}
    assert len(list((run_dir / "videos").glob("*.mp4"))) == 5
    assert threaded_sim.stats.tasks_created == 5  # found, never paid again


def test_rerun_lost_asks_first_and_pays_only_for_what_task_result_still_does_not_know(
    manifest, threaded_sim, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    threaded_sim.config.result_lag_polls = 10_000
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST, "--task-timeout", "0.5"])
    assert set(statuses(run_dir).values()) == {TaskStatus.LOST}
    capsys.readouterr()
    threaded_sim.config.result_lag_polls = 0  # it knows them now, but two are truly gone
    for task_id in list(threaded_sim.tasks)[:2]:
        del threaded_sim.tasks[task_id]
    assert main(["rerun", str(run_dir), "--lost", *FAST, "--task-timeout", "30"]) == 0
    assert "a 'lost' task was given a task id" in capsys.readouterr().out
    assert threaded_sim.stats.tasks_created == 7  # only the two it did not know: once more
    assert set(statuses(run_dir).values()) == {"succeeded"}


def test_the_balance_shows_cash_and_credit_apart_and_what_the_cash_alone_covers(
    manifest, threaded_sim, tmp_path, capsys
):
    """availableBalance is cash plus a credit line (the docs' own example): "covers N
    tasks" must say what the credit adds."""
    threaded_sim.config.balance_usd = 1.0  # cash for 2 of the 5 tasks at $0.35
    threaded_sim.config.credit_usd = 2.0
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir)]) == 2  # no --yes: asked only
    out = capsys.readouterr().out
    assert "balance $3.00 available (cash $1.00 + credit $2.00) (the account, now)" in out
    assert "covers about 5 of these 5 task(s) counting the credit line, 2 from the cash" in out
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    assert main(["status", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "balance $1.25 available (cash $0.00 + credit $2.00; owed $0.75) at " in out
