"""Reruns, budgets, failed-row manifests and resume, through the CLI as a user runs them,
against a simulator on its own thread over a real socket."""

from __future__ import annotations

import csv
import json
import sqlite3
import textwrap
from pathlib import Path

import pytest

from runner.cli.commands import main
from tests.conftest import FAST, draw_image

PRICE_5S_SILENT = 0.35  # 5 s x $0.07


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    draw_image(tmp_path / "a.png", 640, 360)
    path = tmp_path / "batch.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            defaults: {sound: false}
            rows:
              - {id: one, image: a.png, prompt: first, negative_prompt: blur}
              - {id: two, image: a.png, prompt: second, duration: 10, cfg_scale: 0.3}
              - {id: three, image: a.png, prompt: third, sound: true, voice_list: [v1]}
            """
        ),
        encoding="utf-8",
    )
    return path


def statuses(run_dir: Path) -> dict[str, str]:
    with sqlite3.connect(run_dir / "state.sqlite") as db:
        return dict(db.execute("SELECT task_key, status FROM tasks"))


def attempts(run_dir: Path, key: str) -> list[tuple[str, str | None]]:
    with sqlite3.connect(run_dir / "state.sqlite") as db:
        query = "SELECT outcome, task_id FROM attempts WHERE task_key = ? ORDER BY attempt"
        return db.execute(query, (key,)).fetchall()


def test_rerun_failed_is_a_new_attempt_kept_beside_the_old_one(
    manifest, threaded_sim, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    threaded_sim.script_fates("succeed", "fail", "succeed")
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 1
    old_id = attempts(run_dir, "two/1")[0][1]

    assert main(["rerun", str(run_dir), "--failed", *FAST]) == 0
    out = capsys.readouterr().out
    assert "1 task(s) queued again as new attempts" in out
    assert threaded_sim.stats.created_by_prompt == {"first": 1, "second": 2, "third": 1}
    assert [outcome for outcome, _ in attempts(run_dir, "two/1")] == ["created", "created"]
    assert attempts(run_dir, "two/1")[0][1] == old_id  # the first attempt's id is kept
    with (run_dir / "report.csv").open(encoding="utf-8") as report:
        rows = {r["task_key"]: r for r in csv.DictReader(report)}
    assert rows["two/1"]["attempts"] == "2" and rows["two/1"]["status"] == "succeeded"
    assert rows["two/1"]["task_id"] != old_id
    assert not (run_dir / "failed.yaml").exists()  # nothing failed any more

    # Nothing is left to rerun: no money is spent asking again.
    assert main(["rerun", str(run_dir), "--failed", *FAST]) == 0
    assert "no task to rerun" in capsys.readouterr().out
    assert threaded_sim.stats.tasks_created == 4


def test_rerun_chooses_by_status_or_key_and_refuses_what_is_not_finished(
    manifest, threaded_sim, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    assert main(["rerun", str(run_dir), *FAST]) == 2
    assert "say what to rerun" in capsys.readouterr().err
    assert main(["rerun", str(run_dir), "--keys", "nope/1", *FAST]) == 2
    assert "no such task key: nope/1" in capsys.readouterr().err
    with sqlite3.connect(run_dir / "state.sqlite") as db:
        db.execute("UPDATE tasks SET status = 'processing' WHERE task_key = 'three/1'")
    assert main(["rerun", str(run_dir), "--keys", "three/1", *FAST]) == 2
    assert "not finished, so not rerun: three/1" in capsys.readouterr().err

    # --keys reruns a succeeded task too, if the user wants another take.
    # The busy one is polled to its end alongside, not sent again.
    assert main(["rerun", str(run_dir), "--keys", "one/1", *FAST]) == 0
    assert threaded_sim.stats.created_by_prompt["first"] == 2
    assert threaded_sim.stats.created_by_prompt["third"] == 1


def test_rerun_unknown_warns_that_it_may_pay_twice(manifest, threaded_sim, tmp_path, capsys):
    run_dir = tmp_path / "run"
    threaded_sim.script("submit", "drop_after_create")
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 1
    assert statuses(run_dir)["one/1"] == "unknown"
    assert main(["rerun", str(run_dir), "--unknown", *FAST]) == 0
    assert "may already exist at the API and be billed" in capsys.readouterr().out
    assert threaded_sim.stats.created_by_prompt["first"] == 2  # paid twice, on request


def test_failed_rows_become_manifests_that_validate_accepts_unchanged(
    manifest, threaded_sim, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    threaded_sim.script_fates("fail", "fail", "fail")
    threaded_sim.script("submit", "drop_after_create")  # one/1 unknown: not in failed.*
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 1
    capsys.readouterr()

    yaml_text = (run_dir / "failed.yaml").read_text(encoding="utf-8")
    assert "# two/1 (failed, provider): TASK_FAILED" in yaml_text
    assert "1 'unknown' task(s) are not listed" in yaml_text
    for name in ("failed.yaml", "failed.csv"):
        assert main(["validate", str(run_dir / name)]) == 0
        assert "OK, 2 task(s) from 2 row(s)" in capsys.readouterr().out
    # Every setting survives the round trip, not only the prompt.
    with (run_dir / "failed.csv").open(encoding="utf-8") as handle:
        rows = {r["id"]: r for r in csv.DictReader(handle)}
    assert rows["two-1"]["duration"] == "10" and rows["two-1"]["cfg_scale"] == "0.3"
    assert rows["three-1"]["sound"] == "true" and rows["three-1"]["voice_list"] == "v1"
    assert Path(rows["two-1"]["image"]).is_absolute()

    # Run as a new batch, the failed rows cost the same as before.
    again = ["run", str(run_dir / "failed.yaml"), "--out", str(tmp_path / "again"), *FAST]
    assert main(again) == 0
    assert threaded_sim.stats.created_by_prompt == {"first": 1, "second": 2, "third": 2}


def test_budget_stops_submitting_before_the_estimate_passes_it(tmp_path, threaded_sim, capsys):
    draw_image(tmp_path / "a.png")
    path = tmp_path / "five.yaml"
    rows = "\n".join(f"  - {{id: r{i}, image: a.png, prompt: p{i}}}" for i in range(5))
    path.write_text(f"defaults: {{sound: false}}\nrows:\n{rows}\n", encoding="utf-8")
    run_dir = tmp_path / "run"

    # $1.00 pays for two tasks of $0.35; a third would make $1.05.
    assert main(["run", str(path), "--out", str(run_dir), "--budget", "1.00", *FAST]) == 1
    out = capsys.readouterr().out
    assert "budget $1.00" in out and "budget reached: 3 task(s) left pending" in out
    assert threaded_sim.stats.tasks_created == 2

    # The budget is for the whole folder, earlier runs included, and is remembered.
    assert main(["resume", str(run_dir), "--yes"]) == 1
    assert threaded_sim.stats.tasks_created == 2
    assert main(["resume", str(run_dir), "--budget", "1.40", "--yes"]) == 1
    assert threaded_sim.stats.tasks_created == 4
    assert main(["resume", str(run_dir), "--budget", "inf", "--yes"]) == 0
    assert threaded_sim.stats.tasks_created == 5
    assert set(statuses(run_dir).values()) == {"succeeded"}


def test_a_folder_is_bound_to_an_api_only_once_it_sent_something(
    manifest, threaded_sim, quick_rehearsal, tmp_path, monkeypatch, capsys
):
    run_dir = tmp_path / "run"
    args = [a for a in FAST if a != "--yes"]
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert main(["run", str(manifest), "--out", str(run_dir), *args]) == 2  # declined
    assert threaded_sim.stats.submits == 0
    # Nothing was sent, so rehearsing into the same folder is fine.
    assert main(["run", str(manifest), "--simulate", "--out", str(run_dir), *FAST]) == 0
    with sqlite3.connect(run_dir / "state.sqlite") as db:
        meta = dict(db.execute("SELECT key, value FROM meta"))
    assert meta["api"] == "embedded simulator"
    assert json.loads(meta["options"])["submit_rate"] == "100/s"


def test_resume_of_a_rehearsal_finishes_tasks_its_crashed_simulator_had(
    manifest, quick_rehearsal, tmp_path
):
    run_dir = tmp_path / "run"
    assert (
        main(["run", str(manifest), "--simulate", "--out", str(run_dir), "--no-download", *FAST])
        == 0
    )
    # As if the process had died before the downloads: the next simulator adopts them.
    with sqlite3.connect(run_dir / "state.sqlite") as db:
        db.execute("UPDATE tasks SET status = 'queued' WHERE task_key = 'one/1'")
    assert main(["resume", str(run_dir), "--yes"]) == 0
    assert statuses(run_dir)["one/1"] == "succeeded"


def test_resume_needs_a_run_folder(tmp_path, capsys):
    assert main(["resume", str(tmp_path)]) == 2
    assert "is not a run folder" in capsys.readouterr().err
