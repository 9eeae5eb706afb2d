"""``kling-batch doctor`` (issue 28, item 6): free checks that never create a task, and
``--spend``: one announced task whose outcome settles the readings, recorded for the
next runs. Against a simulator on its own thread, over real sockets."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from runner.api.learned import LINKS, SAME_LINK, Learned
from runner.cli.commands import main
from runner.simulator import Readings
from tests.conftest import FAST, SIM_KEY, draw_image, write_rows


def test_the_free_checks_create_nothing_and_say_each_finding(threaded_sim, capsys):
    threaded_sim.config.balance_usd, threaded_sim.config.credit_usd = 12.5, 5.0
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "ok    key: accepted; balance $17.50 available (cash $12.50 + credit $5.00)" in out
    assert "ok    clock: within " in out
    assert "ok    Task Result: answers; a made-up task id is TASK_NOT_FOUND" in out
    assert "note  rate limits: no rate-limit headers" in out
    assert "note  TLS: plain http on this machine" in out
    assert threaded_sim.stats.submits == 0 and threaded_sim.stats.tasks_created == 0
    assert SIM_KEY not in out


def test_a_refused_key_is_a_failed_check(threaded_sim, monkeypatch, capsys):
    monkeypatch.setenv("NOVITA_API_KEY", "sk_wrong")
    assert main(["doctor"]) == 3
    assert "FAIL  key: refused (INVALID_API_KEY): check NOVITA_API_KEY" in capsys.readouterr().out


def test_nothing_answering_is_a_failed_check(monkeypatch, capsys):
    with socket.socket() as held:  # bound, never listening: nothing answers there
        held.bind(("127.0.0.1", 0))
        monkeypatch.setenv("NOVITA_BASE_URL", f"http://127.0.0.1:{held.getsockname()[1]}")
        monkeypatch.setenv("NOVITA_API_KEY", SIM_KEY)
        assert main(["doctor"]) == 3
    assert "FAIL  base URL: no answer from http://127.0.0.1:" in capsys.readouterr().out


def test_a_clock_far_from_the_apis_and_rate_limit_headers_are_said(threaded_sim, capsys):
    threaded_sim.config.date_skew_s = 120  # the API's clock is two minutes ahead
    threaded_sim.config.submit_limit, threaded_sim.config.rate_limit_headers = 20, True
    assert main(["doctor"]) == 3
    out = capsys.readouterr().out
    # A Date header is to the second: two minutes read as 119 or 120 s.
    assert re.search(r"FAIL  clock: 1(19|20) s behind the API's: link expiries and deadlines", out)
    assert "ok    rate limits: x-ratelimit-limit: 20, x-ratelimit-window: 60s" in out


def test_what_a_run_learned_is_listed(threaded_sim, tmp_path, capsys):
    threaded_sim.config.readings = Readings(image="data-uri")
    draw_image(tmp_path / "frame.png")
    manifest = write_rows(tmp_path / "night.yaml", 2)
    args = ["run", str(manifest), "--out", str(tmp_path / "run"), *FAST, "--canary", "succeeded"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "note  learned: kling-v2.6-pro-i2v/image = data-uri (succeeded, " in out


def test_spend_settles_the_picture_form_the_price_and_the_links(threaded_sim, monkeypatch, capsys):
    threaded_sim.config.readings = Readings(image="data-uri")
    threaded_sim.config.balance_usd = 10.0
    threaded_sim.config.sign_links_once = True
    threaded_sim.advance(-30)  # its links are dated half a minute back: a new one would show
    monkeypatch.setattr("runner.run.doctor.RELINK_AFTER_S", 0.0)
    assert main(["doctor", "--spend", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "sends one real task of kling-v2.6-pro-i2v: 5 s, no sound" in out
    assert "estimated $0.35" in out
    assert "outcome: succeeded (task " in out
    assert "refused first: HTTP 400 INVALID_IMAGE_FORMAT" in out
    assert "the picture went as a data:image/...;base64, URI" in out
    assert "measured price: $0.35 (estimate $0.35)" in out
    assert f"Task Result, asked again: {SAME_LINK}" in out
    video = Path(out.split("the video: ")[1].split()[0])
    assert video.is_file() and video.stat().st_size > 1000
    assert threaded_sim.stats.tasks_created == 1  # one task, as announced
    learned = Learned.open(threaded_sim.base_url)
    assert learned.value("kling-v2.6-pro-i2v/image") == "data-uri"
    assert learned.value(LINKS) == SAME_LINK
    assert learned.value("price/kling-v2.6-pro-i2v/silent") == "0.0700"


def test_spend_without_a_yes_and_no_terminal_sends_nothing(threaded_sim, capsys):
    assert main(["doctor", "--spend"]) == 2
    assert "refusing to spend without --yes" in capsys.readouterr().err
    assert threaded_sim.stats.submits == 0


@pytest.mark.parametrize("model", ["kling-v2.1-i2v", "kling-v3.0-std-t2v"])
def test_spend_takes_each_models_cheapest_task(threaded_sim, capsys, model):
    assert main(["doctor", "--spend", "--yes", "--model", model]) == 0
    assert threaded_sim.stats.created_by_model == {model: 1}
    out = capsys.readouterr().out
    duration = "3 s" if model.startswith("kling-v3.0") else "5 s"
    assert f"sends one real task of {model}: {duration}" in out
