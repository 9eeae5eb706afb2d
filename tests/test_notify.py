"""Telling the owner: Apprise posts to a real local HTTP receiver (``json://``), one
message per run (a summary, or an alert when it stopped early), nothing but a warning
when the receiver is down, the URL's token nowhere; and ``--on-finish``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.cli.commands import main
from tests.conftest import FAST, TOKEN, write_rows


@pytest.fixture
def frame(tmp_path: Path) -> Path:
    from tests.conftest import draw_image

    return draw_image(tmp_path / "frame.png")


def no_token_in(run_dir: Path, *texts: str) -> None:
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    for text in texts:
        assert TOKEN not in text


def test_a_finished_run_sends_one_summary_and_keeps_the_token_secret(
    tmp_path, frame, threaded_sim, receiver, capsys
):
    manifest = write_rows(tmp_path / "m.yaml", 2)
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), "--notify", receiver.url, *FAST]) == 0
    (message,) = receiver.received
    assert message["path"] == f"/{TOKEN}"
    assert message["title"] == "kling-batch run: 2/2 succeeded"
    assert "2 succeeded" in message["message"] and "report: " in message["message"]
    assert "spent ~ $0.70 (estimate)" in message["message"]
    out = capsys.readouterr()
    no_token_in(run_dir, out.out, out.err)
    # resume takes the URL again from the environment, never from the folder
    assert main(["resume", str(run_dir), *FAST]) == 0
    assert len(receiver.received) == 1


def test_a_run_that_stops_early_sends_one_alert(
    tmp_path, frame, threaded_sim, receiver, monkeypatch
):
    monkeypatch.setenv("NOVITA_API_KEY", "sk_wrong_key_123456")
    monkeypatch.setenv("KLING_BATCH_NOTIFY", receiver.url)
    manifest = write_rows(tmp_path / "m.yaml", 1)
    assert main(["run", str(manifest), "--out", str(tmp_path / "run"), *FAST]) == 3
    (message,) = receiver.received
    assert message["title"].startswith("kling-batch run: stopped: before any submit: HTTP 403")


def test_a_receiver_that_is_down_is_a_warning_not_a_changed_exit_code(
    tmp_path, frame, threaded_sim, receiver, capsys
):
    down = receiver.url
    receiver.server.shutdown()
    receiver.server.server_close()  # nothing listens there now
    manifest = write_rows(tmp_path / "m.yaml", 1)
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), "--notify", down, *FAST]) == 0
    err = capsys.readouterr().err
    assert "warning: notification to json://127.0.0.1 failed" in err
    assert "notification to json://127.0.0.1 failed" in (run_dir / "run.log").read_text()
    no_token_in(run_dir, err)


def test_notify_test_sends_one_message_and_nothing_else(tmp_path, receiver, capsys):
    assert (
        main(["run", str(tmp_path / "none.yaml"), "--notify", receiver.url, "--notify-test"]) == 0
    )
    (message,) = receiver.received
    assert message["title"] == "kling-batch: a test"
    out = capsys.readouterr().out
    assert "test message sent to 1 of 1: json://127.0.0.1" in out and TOKEN not in out
    assert not (tmp_path / "none").exists()


def test_on_finish_gets_the_summary_and_never_changes_the_exit_code(
    tmp_path, frame, threaded_sim, capsys
):
    manifest = write_rows(tmp_path / "m.yaml", 1)
    run_dir = tmp_path / "run"
    hook = f"cat > {tmp_path}/summary.json; echo $KLING_BATCH_EXIT $KLING_BATCH_DIR; exit 3"
    assert main(["run", str(manifest), "--out", str(run_dir), "--on-finish", hook, *FAST]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["counts"] == {"succeeded": 1} and summary["exit_code"] == 0
    err = capsys.readouterr().err
    assert f"--on-finish exited 3; its output ended:\n0 {run_dir}" in err
    assert "--on-finish exited 3" in (run_dir / "run.log").read_text()

    slow = ["--on-finish", "sleep 30", "--on-finish-timeout", "0.3"]
    assert main(["resume", str(run_dir), *slow, *FAST]) == 0
    assert "--on-finish ran out of its 0.3 s and was stopped" in capsys.readouterr().err
