"""The morning after: failures by cause (a table of codes and words), reruns that can
succeed, and a bad night that stops itself, end to end against the simulator's
moderation knobs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.cli.commands import main
from runner.core.causes import FailureClass, failure_class
from runner.engine.streak import FailureStreak
from runner.ledger.transitions import RunState
from runner.simulator import SimConfig, simulator_in_thread
from tests.conftest import FAST, SIM_KEY, draw_image

M, IN, P, A = (
    FailureClass.MODERATION,
    FailureClass.INPUT,
    FailureClass.PROVIDER,
    FailureClass.ACCOUNT,
)


@pytest.mark.parametrize(
    ("reason", "cause"),
    [
        ("HTTP 400 ILLEGAL_PROMPT: the prompt contains sensitive content", M),
        ("HTTP 400 ILLEGAL_IMAGE_CONTENT: the image is not allowed", M),
        ("HTTP 400 INVALID_REQUEST_BODY: duration: must be one of 5, 10", IN),
        ("HTTP 400 INVALID_IMAGE_FORMAT: not a JPEG", IN),
        ("HTTP 400 IMAGE_FILE_EXCEEDS_MAX_SIZE: 12 MB", IN),
        ("HTTP 400 IMAGE_EXCEEDS_MAX_RESOLUTION: too large", IN),
        ("HTTP 403 FEATURE_NOT_ALLOWED: not for this key", A),
        ("HTTP 400 BILLING_BALANCE_NOT_ENOUGH: balance not enough", A),
        ("HTTP 403 BILLING_AUTH_FAILED: billing", A),
        ("HTTP 500 BILLING_FAILED: retry later", P),  # the API's own step, not the account
        ("TASK_FAILED: the model could not generate this video", P),
        ("The generated video was flagged by content moderation", M),
        ("Failure to pass the risk control system: sensitive content", M),
        ("NSFW content detected", M),
        ("image could not be read at submit time: [Errno 2] No such file", IN),
        ("its picture could not be made: /a.heic could not be converted: truncated", IN),
        ("the API did not know this task id for 60 s (TASK_NOT_FOUND)", P),
        ("end_image: the API takes it as an http(s) URL only (it refused ...)", IN),
        ("Image pixel is invalid", P),  # after billing: a canary in another form settles it
        ("", P),
        (None, P),
    ],
)
def test_a_failure_has_one_cause_codes_first_then_words(reason, cause):
    assert failure_class(reason) == cause


def test_a_code_beats_a_word():
    assert failure_class("HTTP 400 INVALID_REQUEST_BODY: moderation_level is unknown") == IN


def test_a_streak_is_failures_in_a_row_and_a_success_starts_it_again():
    streak = FailureStreak(3)
    for key, failed in [("a", True), ("b", True), ("c", False), ("d", True), ("e", True)]:
        streak.note(key, failed, "TASK_FAILED: x")
    assert streak.tripped is None
    streak.note("f", True, "HTTP 400 ILLEGAL_PROMPT: no")
    said = str(streak.tripped)
    assert "the last 3 tasks to finish all failed (2 provider, 1 moderation)" in said
    assert "2 of them: TASK_FAILED: x" in said
    never = FailureStreak(0)
    for _ in range(50):
        never.note("k", True, "x")
    assert never.tripped is None


def rows(folder: Path, prompts: list[str]) -> Path:
    draw_image(folder / "frame.png")
    lines = "\n".join(
        f"  - {{id: r{i}, image: frame.png, prompt: '{p}'}}" for i, p in enumerate(prompts)
    )
    path = folder / "m.yaml"
    path.write_text(f"defaults: {{sound: false}}\nrows:\n{lines}\n", encoding="utf-8")
    return path


@pytest.fixture
def moderating_sim(monkeypatch):
    config = SimConfig(
        api_key=SIM_KEY,
        queue_s=0.05,
        generation_s=0.1,
        jitter=0,
        refuse_prompt_words=("forbidden",),
        prompt_fates={"flagged": "moderated", "broken": "fail"},
    )
    with simulator_in_thread(config) as sim:
        monkeypatch.setenv("NOVITA_BASE_URL", sim.base_url)
        monkeypatch.setenv("NOVITA_API_KEY", SIM_KEY)
        yield sim


def test_failures_by_cause_and_a_rerun_that_leaves_out_what_would_be_refused(
    tmp_path, moderating_sim, capsys
):
    manifest = rows(tmp_path, ["a calm sea", "a forbidden thing", "a flagged thing", "broken"])
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 1
    capsys.readouterr()
    assert main(["status", str(run_dir), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["failures_by_class"] == {"moderation": 2, "provider": 1}
    by_key = {f["task_key"]: f["failure_class"] for f in status["failures"]}
    assert by_key == {"r1/1": "moderation", "r2/1": "moderation", "r3/1": "provider"}
    report = (run_dir / "report.csv").read_text(encoding="utf-8")
    assert ",moderation," in report and ",provider," in report
    assert 'data-filter="failed:moderation"' in (run_dir / "report.html").read_text()
    failed_yaml = (run_dir / "failed.yaml").read_text(encoding="utf-8")
    assert "# r1/1 (failed, moderation): HTTP 400 ILLEGAL_PROMPT" in failed_yaml
    assert "r2/1 (failed, moderation)" in failed_yaml and "r3/1 (failed, provider)" in failed_yaml

    created = moderating_sim.stats.tasks_created
    assert main(["rerun", str(run_dir), "--failed", *FAST]) == 1
    said = capsys.readouterr().out
    assert "left out 2 failed task(s) (2 moderation)" in said and "--class moderation" in said
    assert moderating_sim.stats.tasks_created == created + 1  # only the provider failure

    submits = moderating_sim.stats.submits
    assert main(["rerun", str(run_dir), "--failed", "--class", "moderation", *FAST]) == 1
    assert moderating_sim.stats.submits == submits + 3  # all three, as asked


def test_a_bad_night_stops_submitting_and_resume_goes_on(tmp_path, moderating_sim, capsys):
    manifest = rows(tmp_path, ["a forbidden thing"] * 12)
    run_dir = tmp_path / "run"
    # 2 submits a second: each refusal is answered long before the next slot, so the
    # streak of 3 is known before a 4th is sent.
    slow = [*FAST, "--submit-rate", "2/s", "--max-failure-streak", "3"]
    assert main(["run", str(manifest), "--out", str(run_dir), *slow]) == 1
    err = capsys.readouterr().err
    assert "stopped submitting: the last 3 tasks to finish all failed" in err
    assert "(3 moderation); 3 of them: HTTP 400 ILLEGAL_PROMPT" in err
    assert "kling-batch resume" in err
    assert moderating_sim.stats.submits == 3
    state = RunState.open(run_dir, read_only=True)
    try:
        assert state.counts().get("pending") == 9
    finally:
        state.close()
    # Turned off, the same folder submits the rest.
    assert main(["resume", str(run_dir), *FAST, "--max-failure-streak", "0"]) == 1
    assert moderating_sim.stats.submits == 12
