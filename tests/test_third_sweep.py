"""The third sweep (issue 29): what a new user and a security reviewer broke, each fed
as they fed it, with the message, the exit code, the simulator's books and the disk
as the judges."""

from __future__ import annotations

import asyncio
import base64
import json
import resource
import signal
import sqlite3
import threading
import time
from pathlib import Path

import psutil
import pytest

from jobs import DEFAULT_MODEL, model_named
from runner.api.client import NovitaClient, Timeouts
from runner.cli.commands import main
from runner.core.errors import SubmitOutcomeUnknown
from runner.engine.wiring import run_engine
from runner.ledger.transitions import RunState
from runner.manifest.files import load
from runner.manifest.plan import plan
from runner.media.formats import check_gif
from runner.simulator import SimConfig, simulator_in_thread
from runner.simulator.video import gif_from_image
from tests.conftest import (
    FAST,
    SIM_KEY,
    TOKEN,
    draw_image,
    fast_engine_config,
    ledger_statuses,
    runner_process,
    wait_until,
    write_rows,
)

SUBMIT_PATH = model_named(DEFAULT_MODEL).path

LONG_JAPANESE = "夜の港で静かに揺れる小さな船と灯台の光が水面に映る情景を描いた長い名前の行です" * 2


def test_a_long_japanese_row_id_and_picture_name_are_paid_once_and_saved(threaded_sim, tmp_path):
    """80 CJK characters are 240 bytes: a name is at most 255 bytes on most disks."""
    folder = tmp_path / "pictures"
    draw_image(folder / f"{LONG_JAPANESE[:70]}.png")
    draw_image(tmp_path / "frame.png")
    manifest = tmp_path / "night.yaml"
    manifest.write_text(
        f"defaults: {{sound: false}}\nrows:\n"
        f"  - {{id: '{LONG_JAPANESE[:80]}', image: frame.png, prompt: p}}\n"
        f"  - {{id: 港, image: pictures/, prompt: q}}\n",
        encoding="utf-8",
    )
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    assert set(ledger_statuses(run_dir).values()) == {"succeeded"}
    names = [p.name for p in (run_dir / "videos").iterdir() if p.suffix == ".mp4"]
    assert len(names) == 2 and all(len(n.encode()) <= 124 for n in names)
    assert threaded_sim.stats.tasks_created == 2
    with sqlite3.connect(run_dir / "state.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM tasks WHERE video_path IS NULL").fetchone()[0] == 0


async def test_an_answer_that_comes_as_a_paused_process_wakes_is_read_not_lost(image):
    """Ctrl-Z then `fg` (or a suspended VM) past the submit timeout: the task is paid
    for, and its answer comes as the process wakes (waiting in the socket, or resent
    by the server a moment later): it is read, not called unknown."""
    body = {"image": base64.b64encode(image().read_bytes()).decode(), "prompt": "p"}
    config = SimConfig(api_key=SIM_KEY, queue_s=0.05, generation_s=0.1)
    timeouts = Timeouts(submit_total=0.5, pause_late_s=0.3, pause_grace_s=3.0)
    with simulator_in_thread(config) as sim:
        sim.script("submit", "hold_after_create")
        answer = threading.Timer(1.4, sim.release_answers)  # 0.2 s after the wake-up

        def pause() -> None:  # the whole process stops: no timer, no read, for a second
            answer.start()
            time.sleep(1.0)

        async with NovitaClient(sim.base_url, SIM_KEY, timeouts=timeouts) as client:
            asyncio.get_running_loop().call_later(0.2, pause)
            task_id = await client.submit(SUBMIT_PATH, body)
        assert task_id in sim.tasks and sim.stats.tasks_created == 1


async def test_a_submit_that_never_answers_is_still_unknown_after_a_pause(image):
    body = {"image": base64.b64encode(image().read_bytes()).decode(), "prompt": "p"}
    timeouts = Timeouts(submit_total=0.5, pause_late_s=0.3, pause_grace_s=0.5)
    with simulator_in_thread(SimConfig(api_key=SIM_KEY)) as sim:
        sim.script("submit", "hold_after_create")  # never released
        async with NovitaClient(sim.base_url, SIM_KEY, timeouts=timeouts) as client:
            asyncio.get_running_loop().call_later(0.2, time.sleep, 1.0)
            with pytest.raises(SubmitOutcomeUnknown, match="no answer"):
                await client.submit(SUBMIT_PATH, body)
        sim.release_answers()


def test_one_task_id_for_two_submits_is_not_two_successes(threaded_sim, tmp_path, capsys):
    """A gateway replays a cached answer: the second row gets the first one's task id."""
    draw_image(tmp_path / "frame.png")
    manifest = write_rows(tmp_path / "night.yaml", 3)
    threaded_sim.script("submit", "ok", "replay_answer")
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 1
    err = capsys.readouterr().err
    assert "which task r0/1 already holds (a gateway replaying an answer?)" in err
    assert ledger_statuses(run_dir) == {"r0/1": "succeeded", "r1/1": "unknown", "r2/1": "succeeded"}
    assert threaded_sim.stats.tasks_created == 2  # the replayed answer made nothing
    assert main(["status", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "unknown r1/1" in out and "already holds" in out
    assert len(list((run_dir / "videos").glob("*.mp4"))) == 2


def test_a_gif_the_api_made_is_kept_as_a_gif_checked_as_one(threaded_sim, tmp_path, capsys):
    threaded_sim.config.video_type = "gif"
    draw_image(tmp_path / "frame.png")
    run_dir = tmp_path / "run"
    assert main(["run", str(write_rows(tmp_path / "n.yaml", 2)), "--out", str(run_dir), *FAST]) == 0
    videos = sorted(p.name for p in (run_dir / "videos").iterdir() if p.is_file())
    assert (
        "r0_1.gif" in videos
        and "r1_1.gif" in videos
        and not any(v.endswith(".mp4") for v in videos)
    )
    assert threaded_sim.stats.media_requests == 2  # each fetched once, never as "damaged"
    assert check_gif(run_dir / "videos" / "r0_1.gif", 5).whole
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert 'src="videos/r0_1.gif"' in page


def test_a_gif_cut_short_is_fetched_again(tmp_path):
    gif = tmp_path / "v.gif"
    gif.write_bytes(gif_from_image(None, 2))
    assert check_gif(gif, 2).whole and check_gif(gif, 2).duration_s == 2
    gif.write_bytes(gif.read_bytes()[:-40])
    assert not check_gif(gif).whole


# --- secrets ---------------------------------------------------------------------------


def no_secret_in(run_dir: Path, *texts: str, secrets: tuple[str, ...]) -> None:
    for path in run_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in data, (secret, path)
    for text in texts:
        for secret in secrets:
            assert secret not in text, secret


def test_notify_tokens_stay_out_of_the_lock_status_and_a_second_runs_refusal(
    threaded_sim, tmp_path, receiver, capsys
):
    draw_image(tmp_path / "frame.png")
    manifest = write_rows(tmp_path / "n.yaml", 3)
    run_dir = tmp_path / "run"
    hook = f"curl -H 'X-Token: {TOKEN}-hook' example.invalid"
    args = ["run", str(manifest), "--out", str(run_dir), *FAST, "--notify", receiver.url]
    threaded_sim.script("submit", "hold_after_create")  # the run stays live meanwhile
    live = runner_process([*args, "--on-finish", hook], threaded_sim, tmp_path)
    wait_until(lambda: threaded_sim.stats.faults["submit:hold_after_create"] == 1, what="held")
    try:
        assert main(["status", str(run_dir)]) == 0
        assert main(["status", str(run_dir), "--json"]) == 0
        assert main(args) == 2  # in use: the refusal names the holder's command
        said = capsys.readouterr()
        assert "--notify json://127.0.0.1/[REDACTED]" in said.out
        assert "--on-finish [REDACTED]" in said.err
    finally:
        threaded_sim.release_answers()
    out, err = live.communicate(timeout=60)
    no_secret_in(run_dir, said.out, said.err, out, err, secrets=(TOKEN,))


def test_a_key_quoted_by_an_api_error_is_nowhere(threaded_sim, tmp_path, receiver, capsys):
    threaded_sim.config.quote_key_in_errors = True
    threaded_sim.config.refuse_prompt_words = ("forbidden",)
    draw_image(tmp_path / "frame.png")
    manifest = tmp_path / "n.yaml"
    manifest.write_text(
        "defaults: {sound: false}\nrows:\n"
        "  - {id: ok, image: frame.png, prompt: fine}\n"
        "  - {id: bad, image: frame.png, prompt: forbidden words}\n",
        encoding="utf-8",
    )
    run_dir = tmp_path / "run"
    args = ["--notify", receiver.url]
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST, *args]) == 1
    first = capsys.readouterr()
    assert "(request: Authorization: Bearer [REDACTED])" in first.err
    assert main(["report", str(run_dir), "--format", "jsonl"]) == 0
    assert main(["status", str(run_dir)]) == 0
    # At the account check, with a key the API does not know and quotes back.
    wrong = tmp_path / "wrong"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("NOVITA_API_KEY", "sk_wrong_quoted_1234")
        assert main(["run", str(manifest), "--out", str(wrong), *FAST, *args]) == 3
    second = capsys.readouterr()
    texts = (first.out, first.err, second.out, second.err, json.dumps(receiver.received))
    no_secret_in(run_dir, *texts, secrets=(SIM_KEY,))
    no_secret_in(wrong, *texts, secrets=("sk_wrong_quoted_1234",))
    assert "Bearer [REDACTED]" in (run_dir / "report.csv").read_text(encoding="utf-8")


# --- a message where "internal error" was ------------------------------------------------


def test_a_key_file_with_windows_line_ends_just_works(threaded_sim, tmp_path, monkeypatch):
    monkeypatch.setenv("NOVITA_API_KEY", SIM_KEY + "\r\n")
    draw_image(tmp_path / "frame.png")
    manifest = write_rows(tmp_path / "n.yaml", 1)
    assert main(["run", str(manifest), "--out", str(tmp_path / "run"), *FAST]) == 0


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("NOVITA_API_KEY", "sk_abc def", "NOVITA_API_KEY holds a space, a control character"),
        ("NOVITA_API_KEY", "sk_clé", "NOVITA_API_KEY holds a space, a control character"),
        ("NOVITA_BASE_URL", "https://me:pw_secret_99@api.example", "holds a user name or password"),
        ("NOVITA_BASE_URL", "api.novita.ai", "NOVITA_BASE_URL must be an http(s) URL"),
        ("NOVITA_BASE_URL", "https://api.example/?k=1", "takes no query or fragment"),
    ],
)
def test_a_bad_key_or_base_url_is_a_message_before_anything_is_made(
    tmp_path, monkeypatch, capsys, variable, value, said
):
    monkeypatch.setenv("NOVITA_API_KEY", SIM_KEY)
    monkeypatch.setenv(variable, value)
    draw_image(tmp_path / "frame.png")
    manifest = write_rows(tmp_path / "n.yaml", 1)
    assert main(["run", str(manifest), "--out", str(tmp_path / "run"), *FAST]) == 2
    err = capsys.readouterr().err
    assert said in err and "internal error" not in err
    assert "pw_secret_99" not in err
    assert main(["doctor"]) == 2
    assert said in capsys.readouterr().err


@pytest.mark.parametrize("url", ["jsn://hooks.example/tok_secret_5521", "json://", "slack://"])
def test_a_notify_url_apprise_cannot_use_is_refused_before_any_folder_is_made(
    threaded_sim, tmp_path, capsys, url
):
    draw_image(tmp_path / "frame.png")
    manifest = write_rows(tmp_path / "n.yaml", 1)
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST, "--notify", url]) == 2
    err = capsys.readouterr().err
    assert "not a URL Apprise can send to" in err and "tok_secret_5521" not in err
    assert not run_dir.exists() and threaded_sim.stats.account_requests == 0


def test_a_full_disk_mid_download_stops_at_once_frees_its_part_files_and_reports(
    threaded_sim, tmp_path
):
    threaded_sim.config.video_bytes = 400_000  # more than the disk takes for one file

    def disk_takes_300_kb_a_file() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))

    draw_image(tmp_path / "frame.png")
    run_dir = tmp_path / "run"
    args = ["run", str(write_rows(tmp_path / "n.yaml", 4)), "--out", str(run_dir), *FAST]
    started = time.monotonic()
    process = runner_process(args, threaded_sim, tmp_path, disk_takes_300_kb_a_file)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 3, err
    assert time.monotonic() - started < 15  # not retried for ~20 s into a full disk
    assert "stopped downloading: the disk is full" in err and "Traceback" not in err
    assert not list(run_dir.rglob("*.part"))  # no half video holds the last free space
    assert (run_dir / "report.csv").is_file()

    resumed = runner_process(["resume", str(run_dir), "--yes"], threaded_sim, tmp_path)
    _, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err
    assert len(list((run_dir / "videos").glob("*.mp4"))) == 4
    assert set(threaded_sim.stats.created_by_prompt.values()) == {1}


# --- smaller, same kind --------------------------------------------------------------------


def test_an_undocumented_terminal_status_is_a_failure_a_rerun_can_resend(
    threaded_sim, tmp_path, capsys
):
    threaded_sim.script_fates("canceled")
    draw_image(tmp_path / "frame.png")
    run_dir = tmp_path / "run"
    assert main(["run", str(write_rows(tmp_path / "n.yaml", 2)), "--out", str(run_dir), *FAST]) == 1
    assert ledger_statuses(run_dir) == {"r0/1": "failed", "r1/1": "succeeded"}
    capsys.readouterr()
    assert main(["status", str(run_dir)]) == 0
    assert "TASK_STATUS_CANCELED: canceled by the provider" in capsys.readouterr().out
    assert main(["rerun", str(run_dir), "--failed", *FAST]) == 0  # asked first: it ended
    assert ledger_statuses(run_dir) == {"r0/1": "succeeded", "r1/1": "succeeded"}


class SteppedClock:
    """The machine's wall clock, stepped by NTP after a sleep; its monotonic clock not."""

    def __init__(self) -> None:
        self.step_s = 0.0

    def time(self) -> float:
        return time.time() + self.step_s

    def monotonic(self) -> float:
        return time.monotonic()


async def test_a_wall_clock_stepped_forward_stalls_nothing(start_sim, tmp_path):
    sim = await start_sim()
    sim.hold()  # every task stays queued
    draw_image(tmp_path / "frame.png")
    state = RunState.open(tmp_path / "run")
    state.sync_plan(plan(load(write_rows(tmp_path / "n.yaml", 3))).tasks)
    clock = SteppedClock()
    async with NovitaClient(sim.base_url, SIM_KEY) as client:
        engine = asyncio.create_task(
            run_engine(state, client, tmp_path / "run", fast_engine_config(), clock=clock)
        )
        while sim.stats.polls < 6:
            await asyncio.sleep(0.01)
        clock.step_s = 3 * 3600  # three hours ahead, at once: past the 1800 s deadline
        polls = sim.stats.polls
        while sim.stats.polls < polls + 6:
            await asyncio.sleep(0.01)
        assert state.counts() == {"queued": 3}  # not stalled: no time went by
        sim.release()
        outcome = await asyncio.wait_for(engine, 20)
    assert outcome.counts == {"succeeded": 3}


def test_on_finish_past_its_timeout_stops_the_commands_children_too(threaded_sim, tmp_path, capsys):
    draw_image(tmp_path / "frame.png")
    pid_file = tmp_path / "child.pid"
    hook = f"sleep 60 & echo $! > {pid_file}; wait"  # the shell waits on a child of its own
    args = ["--on-finish", hook, "--on-finish-timeout", "0.5"]
    manifest = write_rows(tmp_path / "n.yaml", 1)
    started = time.monotonic()
    assert main(["run", str(manifest), "--out", str(tmp_path / "run"), *FAST, *args]) == 0
    assert time.monotonic() - started < 20  # not held by the child's open pipe
    assert "--on-finish ran out of its 0.5 s and was stopped" in capsys.readouterr().err
    child = int(pid_file.read_text())
    wait_until(lambda: not _alive(child), timeout_s=5, what="the hook's child to be gone")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_terminal_escapes_in_a_row_id_are_shown_not_obeyed(threaded_sim, tmp_path, capsys):
    draw_image(tmp_path / "frame.png")
    manifest = tmp_path / "n.yaml"
    sneaky = "evil\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m"  # retitle, clear, colour (YAML escapes)
    manifest.write_text(
        f'rows:\n  - {{id: "{sneaky}", image: frame.png, prompt: p, duration: 7}}\n',
        encoding="utf-8",
    )
    assert main(["validate", str(manifest)]) == 2  # a problem that names the row
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and "\x9b" not in err
    assert "\\x1b]0;pwned\\x07" in err
    manifest.write_text(manifest.read_text().replace(", duration: 7", ""), encoding="utf-8")
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    said = capsys.readouterr()
    assert main(["status", str(run_dir)]) == 0
    shown = said.out + said.err + capsys.readouterr().out + (run_dir / "run.log").read_text()
    assert "\x1b" not in shown and "\x07" not in shown
