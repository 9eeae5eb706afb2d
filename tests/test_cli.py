"""The command line as a user meets it: exit codes, messages, nothing sent on bad
input, and the API key in no file of the run folder. `run` talks to a simulator in
its own thread over a real socket, the way it would talk to the API."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from runner.cli.commands import main
from runner.simulator import SimConfig
from tests.conftest import FAST, SIM_KEY, draw_image


@pytest.fixture
def good_manifest(tmp_path: Path) -> Path:
    draw_image(tmp_path / "a.png", 640, 360)
    path = tmp_path / "good.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            defaults: {sound: false}
            rows:
              - {id: one, image: a.png, prompt: first}
              - {id: two, image: a.png, prompt: [second, third]}
            """
        ),
        encoding="utf-8",
    )
    return path


@pytest.fixture
def bad_manifest(tmp_path: Path) -> Path:
    draw_image(tmp_path / "tiny.png", 200, 200)
    draw_image(tmp_path / "ok.png", 640, 360)
    path = tmp_path / "bad.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            rows:
              - {id: small, image: tiny.png, prompt: p}
              - {id: typo, image: ok.png, prompt: p, durration: 10}
              - {id: seven, image: ok.png, prompt: p, duration: 7, aspect_ratio: "4:3"}
              - {id: gone, image: missing.jpg, prompt: p}
              - {id: noprompt, image: ok.png}
            """
        ),
        encoding="utf-8",
    )
    return path


def test_validate_prints_tasks_and_estimate(good_manifest, capsys):
    assert main(["validate", str(good_manifest)]) == 0
    out = capsys.readouterr().out
    assert "OK, 3 task(s) from 2 row(s)" in out
    assert "3 x  5s no sound" in out and "$1.05" in out


def test_prices_come_from_the_job_then_the_manifest_then_the_option(tmp_path, capsys):
    draw_image(tmp_path / "a.png")
    path = tmp_path / "priced.yaml"
    path.write_text(
        "prices: {silent: 0.05}\n"
        "rows:\n"
        "  - {image: a.png, prompt: p, sound: false}\n"
        "  - {image: a.png, prompt: q, sound: true, duration: 10}\n",
        encoding="utf-8",
    )
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "1 x  5s no sound        ~ $0.25" in out  # the manifest's price
    assert "1 x 10s with sound      ~ $1.40" in out  # the job's own
    assert main(["validate", str(path), "--price-per-second", "sound=0.1"]) == 0
    assert "total (estimate) ~ $1.25" in capsys.readouterr().out
    assert main(["validate", str(path), "--price-per-second", "loud=1"]) == 2
    assert "--price-per-second: prices.loud = 1: is not a price tier" in capsys.readouterr().err


def test_validate_lists_every_problem_with_file_line_row_and_field(bad_manifest, capsys):
    assert main(["validate", str(bad_manifest)]) == 2
    err = capsys.readouterr().err
    assert "6 problem(s); nothing was submitted" in err
    for expected in (
        f"{bad_manifest}:2: row 'small': image = '",
        "tiny.png': is 200x200 as it would be sent: both sides must be at least 300 px",
        f"{bad_manifest}:3: row 'typo': durration = 10: is not a field of kling-v2.6-pro-i2v "
        "(did you mean 'duration'?)",
        f"{bad_manifest}:4: row 'seven': duration = 7: must be one of 5, 10",
        f"{bad_manifest}:4: row 'seven': aspect_ratio = '4:3': must be one of 16:9, 9:16, 1:1",
        f"{bad_manifest}:5: row 'gone': image = ",
        f"{bad_manifest}:6: row 'noprompt': prompt: is required",
    ):
        assert expected in err


def test_run_on_a_bad_manifest_sends_nothing(bad_manifest, threaded_sim, tmp_path):
    assert main(["run", str(bad_manifest), "--out", str(tmp_path / "run"), *FAST]) == 2
    assert threaded_sim.stats.submits == 0
    assert not (tmp_path / "run").exists()


def test_run_needs_a_key_and_a_yes_when_there_is_no_terminal(
    good_manifest, threaded_sim, tmp_path, monkeypatch, capsys
):
    monkeypatch.delenv("NOVITA_API_KEY")
    assert main(["run", str(good_manifest), "--out", str(tmp_path / "r1"), *FAST]) == 2
    assert "set NOVITA_API_KEY" in capsys.readouterr().err
    monkeypatch.setenv("NOVITA_API_KEY", SIM_KEY)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a TTY
    args = [a for a in FAST if a != "--yes"]
    assert main(["run", str(good_manifest), "--out", str(tmp_path / "r2"), *args]) == 2
    assert "refusing to spend without --yes" in capsys.readouterr().err
    assert threaded_sim.stats.submits == 0


def test_run_then_run_again_then_report(good_manifest, threaded_sim, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["run", str(good_manifest), "--out", str(run_dir), *FAST]) == 0
    out = capsys.readouterr().out
    assert "3/3 done (3 succeeded)" in out and "3 task(s) created this run" in out
    report = (run_dir / "report.csv").read_bytes()

    assert main(["run", str(good_manifest), "--out", str(run_dir), *FAST]) == 0
    assert "3 task(s): 0 new, 0 to submit" in capsys.readouterr().out
    assert threaded_sim.stats.tasks_created == 3

    (run_dir / "report.csv").unlink()
    assert main(["report", str(run_dir), "--format", "jsonl"]) == 0
    assert (run_dir / "report.csv").read_bytes() == report
    lines = (run_dir / "report.jsonl").read_text().splitlines()
    assert [json.loads(line)["status"] for line in lines] == ["succeeded"] * 3
    assert (run_dir / "report.html").read_text().count("<video") == 3
    # The key is in no file of the run folder: ledger, log, reports.
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert SIM_KEY.encode() not in path.read_bytes(), path


def test_a_wrong_key_exits_3_and_the_same_command_resumes(
    good_manifest, threaded_sim, tmp_path, monkeypatch, capsys
):
    run_dir = tmp_path / "run"
    monkeypatch.setenv("NOVITA_API_KEY", "sk_wrong_1234")
    assert main(["run", str(good_manifest), "--out", str(run_dir), *FAST]) == 3
    err = capsys.readouterr().err
    assert "INVALID_API_KEY" in err
    assert "check NOVITA_API_KEY, and that the key may use this model" in err
    assert f"to continue: kling-batch resume {run_dir}" in err
    assert threaded_sim.stats.submits == 0  # the account check said it: no submit was sent
    assert "sk_wrong_1234" not in (run_dir / "run.log").read_text()
    monkeypatch.setenv("NOVITA_API_KEY", SIM_KEY)
    assert main(["run", str(good_manifest), "--out", str(run_dir), *FAST]) == 0


def test_some_failed_exits_1_with_the_reason_in_the_report(good_manifest, threaded_sim, tmp_path):
    threaded_sim.script_fates("succeed", "fail")
    run_dir = tmp_path / "run"
    assert main(["run", str(good_manifest), "--out", str(run_dir), *FAST]) == 1
    text = (run_dir / "report.csv").read_text()
    assert text.count(",failed,") == 1 and SimConfig.fail_reason in text


def test_a_changed_request_for_a_sent_task_is_refused(
    good_manifest, threaded_sim, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    assert main(["run", str(good_manifest), "--out", str(run_dir), *FAST]) == 0
    good_manifest.write_text(
        good_manifest.read_text().replace("first", "changed"), encoding="utf-8"
    )
    assert main(["run", str(good_manifest), "--out", str(run_dir), *FAST]) == 2
    assert "already sent with a different request: one/1" in capsys.readouterr().err


def test_a_run_folder_stays_bound_to_the_api_that_created_its_tasks(
    good_manifest, threaded_sim, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    assert main(["run", str(good_manifest), "--out", str(run_dir), *FAST]) == 0
    # Rehearsing into the same folder would poll real task ids against a simulator.
    assert main(["run", str(good_manifest), "--simulate", "--out", str(run_dir), *FAST]) == 2
    assert f"holds tasks of {threaded_sim.base_url}" in capsys.readouterr().err


def test_report_needs_a_run_folder(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "is not a run folder" in capsys.readouterr().err


def test_simulate_rehearses_without_a_key(good_manifest, quick_rehearsal, tmp_path, monkeypatch):
    monkeypatch.delenv("NOVITA_API_KEY", raising=False)
    run_dir = tmp_path / "run"
    assert main(["run", str(good_manifest), "--simulate", "--out", str(run_dir), *FAST]) == 0
    assert len(list((run_dir / "videos").glob("*.mp4"))) == 3


def test_python_dash_m_runner_is_the_same_cli():
    done = subprocess.run(
        [sys.executable, "-m", "runner", "--help"], capture_output=True, text=True, check=True
    )
    assert (
        "{validate,run,resume,rerun,review,export,stitch,status,report,sheet,models,doctor,sim}"
        in done.stdout
    )


def test_the_sim_command_serves_the_api_until_stopped():
    with subprocess.Popen(
        [sys.executable, "-m", "runner", "sim", "--port", "0", "--api-key", SIM_KEY],
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            first_line = process.stdout.readline()  # printed once both listeners are up
            base_url = first_line.split("API at ")[1].split(",")[0]
            with urllib.request.urlopen(f"{base_url}/_sim/stats", timeout=5) as answer:
                stats = json.load(answer)
            assert stats["tasks_created"] == 0 and stats["submits"] == 0
        finally:
            process.terminate()
