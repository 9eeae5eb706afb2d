"""What a person sees while and after a run: progress lines without a terminal, the live
panel's content, and ``status`` agreeing with the report."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import time
from collections import Counter

from rich.console import Console

from runner.cli.commands import main
from runner.engine.progress import LiveProgress, Snapshot, status_line
from tests.conftest import FAST, draw_image


def write_manifest(folder, rows: int = 6):
    draw_image(folder / "a.png")
    path = folder / "batch.yaml"
    lines = "\n".join(f"  - {{id: r{i}, image: a.png, prompt: p{i}}}" for i in range(rows))
    path.write_text(f"defaults: {{sound: false}}\nrows:\n{lines}\n", encoding="utf-8")
    return path


def test_without_a_terminal_progress_is_a_plain_line_every_few_seconds(tmp_path, threaded_sim):
    run_dir = tmp_path / "run"
    threaded_sim.config.generation_s = 0.6  # long enough for several lines
    args = ["run", str(write_manifest(tmp_path)), "--out", str(run_dir), *FAST]
    assert main([*args, "--progress-every", "0.1"]) == 0
    lines = [line for line in (run_dir / "run.log").read_text().splitlines() if "progress:" in line]
    assert len(lines) >= 3
    assert "done (" in lines[-1] and "being polled" in lines[-1] and "spent ~ $" in lines[-1]


def snapshot(**overrides) -> Snapshot:
    values = dict(
        counts={"pending": 10, "processing": 4, "succeeded": 5, "failed": 1},
        in_flight=4,
        created=10,
        polls=25,
        spent_usd=3.5,
        elapsed_s=75,
        submit_rate_per_s=2.0,
        recent_task_s=(30.0, 40.0, 50.0),
    )
    values.update(overrides)
    return Snapshot(**values)


def test_eta_is_pending_at_the_submit_rate_plus_a_typical_task():
    assert snapshot().eta_s == 10 / 2.0 + 40.0
    assert snapshot(recent_task_s=()).eta_s is None  # nothing finished yet: no guess
    assert snapshot(counts={"succeeded": 3}).eta_s == 0.0
    assert "eta 0m45s" in status_line(snapshot())


def test_the_live_panel_shows_counts_rates_spend_and_eta():
    out = io.StringIO()
    panel = LiveProgress(Console(file=out, width=120, color_system=None))
    console = Console(file=io.StringIO(), width=120, color_system=None)
    panel.render(snapshot(created=0, polls=0))
    # Rates are counted between two renders: 10 creates in well under a second.
    console.print(panel.render(snapshot(created=10, polls=25)))
    text = console.file.getvalue()
    for expected in ("6/20 done", "eta 0m45s", "4 in flight", "spent ~ $3.50", "succeeded"):
        assert expected in text, text
    submits = float(text.split("submits ")[1].split("/s")[0])
    assert submits > 10


def test_status_matches_the_report_and_says_what_comes_next(tmp_path, threaded_sim, capsys):
    run_dir = tmp_path / "run"
    threaded_sim.script("submit", "drop_after_create")  # r0/1 unknown
    threaded_sim.script_fates("succeed", "fail")
    assert main(["run", str(write_manifest(tmp_path)), "--out", str(run_dir), *FAST]) == 1
    capsys.readouterr()

    assert main(["status", str(run_dir), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    with (run_dir / "report.csv").open(encoding="utf-8") as handle:
        report = list(csv.DictReader(handle))
    assert status["counts"] == dict(Counter(r["status"] for r in report))
    assert status["total"] == len(report) == 6 and status["done"] == 6
    assert status["spent_usd"] == round(sum(float(r["est_cost_usd"]) for r in report), 2)
    assert any("rerun" in s and "--failed would resubmit 1" in s for s in status["next_steps"])
    assert any("--unknown would resubmit 1" in s for s in status["next_steps"])

    # A task still in flight: its age, the oldest, and what resume would do.
    with sqlite3.connect(run_dir / "state.sqlite") as db:
        db.execute(
            "UPDATE tasks SET status = 'processing', submitted_at = ? WHERE task_key = 'r5/1'",
            (time.time() - 600,),
        )
    assert main(["status", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "5/6 done" in out
    assert "1 in flight; oldest r5/1 (processing, 10m00s since submit)" in out
    assert f"kling-batch resume {run_dir} would poll 1 in flight" in out
