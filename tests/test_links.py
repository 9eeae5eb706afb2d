"""Video links die when their signatures say, not when we polled (issue 28, item 4): the
expiry read from a link (a table), downloads soonest-to-die first, a link Task Result
never signs anew given up without a wasted request, and what a person is told."""

from __future__ import annotations

import calendar

import pytest

from runner.api.client import NovitaClient
from runner.api.learned import LINKS, SAME_LINK, SIGNS_ANEW, Learned
from runner.api.links import link_expiry, run_outlives_links, signed_at, signs_anew
from runner.cli.commands import main
from runner.core.clock import ManualClock
from runner.core.rates import Rate
from runner.core.records import TaskStatus
from runner.engine.fetch import Fetcher
from runner.engine.rate_limits import EndpointLimiter
from runner.engine.stopping import StopSwitch
from runner.engine.wiring import run_engine
from runner.ledger.transitions import RunState
from runner.manifest.files import load
from runner.manifest.plan import plan
from tests.conftest import FAST, SIM_KEY, draw_image, fast_engine_config, write_rows

T0 = calendar.timegm((2026, 12, 5, 14, 30, 0, 0, 0, 0))  # 20261205T143000Z
S3 = "https://b.s3.amazonaws.com/v.mp4?X-Amz-Date=20261205T143000Z&X-Amz-Expires=3600&X-Amz-Signature=ab"

LINKS_TABLE = [
    # (url, video_url_ttl, answered at, expires at, how it is known)
    (S3, 3600, T0 + 900, T0 + 3600, "signature"),  # polled 15 min later: still dies at T0+1h
    (S3.replace("X-Amz-", "x-amz-"), None, T0, T0 + 3600, "signature"),  # any case
    (
        "https://g.example/v.mp4?X-Goog-Date=20261205T143000Z&X-Goog-Expires=600",
        3600,
        T0,
        T0 + 600,
        "signature",
    ),
    ("https://cdn.example/v.mp4?Expires=1796000000&Signature=x", 3600, T0, 1796000000, "signature"),
    ("https://cdn.example/v.mp4", 3600, T0, T0 + 3600, "ttl"),  # unsigned: the ttl from now
    ("https://b.s3/v.mp4?X-Amz-Date=yesterday&X-Amz-Expires=60", 120, T0, T0 + 120, "ttl"),
    ("https://cdn.example/v.mp4", None, T0, None, "unknown"),
    (None, 3600, T0, T0 + 3600, "ttl"),
]


@pytest.mark.parametrize(("url", "ttl", "answered", "expires", "basis"), LINKS_TABLE)
def test_a_link_dies_when_its_own_signature_says(url, ttl, answered, expires, basis):
    expiry = link_expiry(url, ttl, answered)
    assert (expiry.at, expiry.basis) == (expires, basis)


def test_a_second_answer_tells_whether_links_are_signed_anew():
    later = S3.replace("143000Z", "143500Z").replace("=ab", "=cd")
    assert signs_anew(S3, later, 3600, T0 + 300) is True
    assert signs_anew(S3, S3, 3600, T0 + 300) is False  # the same link, 5 min on
    assert signs_anew(S3, S3, 3600, T0 + 1) is None  # within a second: cannot tell
    epoch = "https://cdn.example/v.mp4?Expires=1796000000&Signature=x"
    assert signed_at(epoch, 3600) == 1796000000 - 3600
    assert signs_anew("https://a/v.mp4", "https://a/v.mp4", None, T0) is None


def test_a_run_longer_than_a_link_lives_is_said():
    assert run_outlives_links(100, 20 / 60) is None  # 5 min of submits + 5 min: within 1 h
    assert run_outlives_links(2000, 20 / 60) == pytest.approx(6000 + 300)


async def test_downloads_go_soonest_to_die_first(tmp_path):
    fetched: list[str] = []

    class Recording(Fetcher):
        async def fetch_one(self, session, key):  # the order is what is tested
            fetched.append(key)

    fetcher = Recording(
        None, None, EndpointLimiter(Rate(1, 1), "poll"), StopSwitch(), tmp_path, workers=1
    )
    for key, dies in (
        ("late", T0 + 3000),
        ("never said", None),
        ("soon", T0 + 60),
        ("mid", T0 + 900),
    ):
        fetcher.add(key, dies)
    fetcher.close()
    await fetcher.run()
    assert fetched == ["soon", "mid", "late", "never said"]


async def test_a_link_never_signed_anew_is_given_up_after_one_refusal_of_it(start_sim, tmp_path):
    """Task Result lists the link it signed when the task finished, on every poll after:
    once the video host refused it, asking again gives the same dead link, which is not
    fetched again; the task is expired (resume asks again, free), and that Task Result
    does not sign links anew is learned."""
    sim = await start_sim(sign_links_once=True, url_ttl_s=60)
    draw_image(tmp_path / "frame.png")
    run_dir = tmp_path / "run"
    state = RunState.open(run_dir)
    state.sync_plan(plan(load(write_rows(tmp_path / "night.yaml", 2))).tasks)
    learned = Learned.open(sim.base_url, state)
    async with NovitaClient(sim.base_url, SIM_KEY) as client:
        await run_engine(state, client, run_dir, fast_engine_config(download=False))
        record = state.get("r0/1")
        signed = signed_at(record.video_url, 60)
        assert record.video_url_expires_at == signed + 60  # from the signature
        clock = ManualClock()
        clock.advance(120)  # the night went on: every link is dead by its signature
        sim.advance(120)
        await run_engine(state, client, run_dir, fast_engine_config(), clock=clock, learned=learned)
    assert state.counts() == {"expired": 2}
    error = state.get("r0/1").error
    assert "gives again the link the video host refused" in error
    assert "does not sign links anew" in error
    assert sim.stats.media_requests == 2  # each link tried once: our clock alone condemns none
    assert learned.value(LINKS) == SAME_LINK


async def test_a_refreshed_link_is_learned_as_signed_anew(start_sim, tmp_path):
    sim = await start_sim()
    draw_image(tmp_path / "frame.png")
    run_dir = tmp_path / "run"
    state = RunState.open(run_dir)
    state.sync_plan(plan(load(write_rows(tmp_path / "night.yaml", 1))).tasks)
    learned = Learned.open(sim.base_url, state)
    async with NovitaClient(sim.base_url, SIM_KEY) as client:
        await run_engine(state, client, run_dir, fast_engine_config(download=False))
        sim.advance(5)  # a new signing now shows a later date
        sim.script("media", "403")  # the download finds its link refused: asked again
        await run_engine(state, client, run_dir, fast_engine_config(), learned=learned)
    assert state.get("r0/1").status == TaskStatus.SUCCEEDED and state.get("r0/1").video_path
    assert learned.value(LINKS) == SIGNS_ANEW
    reread = Learned.open(sim.base_url)  # kept in the user's cache for the next folder
    assert reread.value(LINKS) == SIGNS_ANEW


def test_no_download_says_when_the_links_die_and_what_to_do(threaded_sim, tmp_path, capsys):
    draw_image(tmp_path / "frame.png")
    manifest = write_rows(tmp_path / "night.yaml", 3)
    run_dir = tmp_path / "run"
    threaded_sim.config.url_ttl_s = 600
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST, "--no-download"]) == 0
    out = capsys.readouterr().out
    assert "3 video link(s) not fetched die " in out
    assert f"kling-batch resume {run_dir} --download fetches them before then" in out
    assert "Task Result has not been seen to sign a link anew" in out
    assert main(["status", str(run_dir)]) == 0
    assert "3 video link(s) not fetched die " in capsys.readouterr().out
    report = (run_dir / "report.csv").read_text()
    assert "video_url_expires_at" in report.splitlines()[0]


def test_no_download_on_a_night_longer_than_a_link_lives_is_warned_before_the_question(
    threaded_sim, tmp_path, capsys
):
    draw_image(tmp_path / "frame.png")
    manifest = write_rows(tmp_path / "night.yaml", 4)
    args = ["run", str(manifest), "--out", str(tmp_path / "run"), "--no-download"]
    assert main([*args, "--submit-rate", "1/h"]) == 2  # no terminal, no --yes: refused
    err = capsys.readouterr().err
    assert "warning: --no-download keeps links only, and a link lives about 1h00m" in err
    assert "this run takes about 4h05m: the first videos' links die before it ends" in err
    assert threaded_sim.stats.submits == 0
