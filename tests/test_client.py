"""The client against the simulator over real sockets: answers, and every error class.

The key property for money: a submit error is ``retryable`` only when the API provably
created nothing; anything that might have created a task is SubmitOutcomeUnknown.
"""

from __future__ import annotations

import base64
import socket

import aiohttp
import pytest

from jobs import DEFAULT_MODEL, model_named
from runner.api.answers import parse_task_result, retry_after_seconds
from runner.api.client import NovitaClient, Timeouts
from runner.core.errors import (
    AuthError,
    BalanceExhausted,
    EndpointNotFound,
    InvalidRequest,
    RateLimited,
    ServerError,
    SubmitOutcomeUnknown,
    TaskNotFound,
    TransportError,
)
from runner.engine.fetch import download
from tests.conftest import SIM_KEY

SUBMIT_PATH = model_named(DEFAULT_MODEL).path


@pytest.fixture
def body(image) -> dict:
    data = image("frame.png", 640, 360).read_bytes()
    return {"image": base64.b64encode(data).decode(), "prompt": "a cat turns", "duration": 5}


async def test_submit_then_result_follows_the_task_to_success(sim, body):
    async with NovitaClient(sim.base_url, SIM_KEY) as client:
        task_id = await client.submit(SUBMIT_PATH, body)
        assert task_id in sim.tasks
        early = await client.task_result(task_id)
        assert early.status == "TASK_STATUS_QUEUED" and early.eta_s and early.eta_s > 0
        sim.advance(10)
        done = await client.task_result(task_id)
    assert done.status == "TASK_STATUS_SUCCEED"
    assert done.video_url and done.video_url.startswith(sim.media_url)
    assert done.video_url_ttl_s == 3600
    assert done.generation_s == pytest.approx(0.15, abs=0.01)


@pytest.mark.parametrize(
    ("fault", "error", "retryable"),
    [
        ("429", RateLimited, True),
        ("500", ServerError, True),  # CREATE_TASK_FAILED: the answer says nothing was made
        ("503", ServerError, True),
        ("502_html", SubmitOutcomeUnknown, False),  # a gateway: the task may exist
        ("500_after_create", SubmitOutcomeUnknown, False),  # BILLING_FAILED: it may exist
        ("drop_after_create", SubmitOutcomeUnknown, False),
    ],
)
async def test_submit_errors_are_retryable_only_when_nothing_was_created(
    sim, body, fault, error, retryable
):
    sim.script("submit", fault)
    async with NovitaClient(sim.base_url, SIM_KEY) as client:
        with pytest.raises(error) as caught:
            await client.submit(SUBMIT_PATH, body)
    assert caught.value.retryable is retryable
    created = sim.stats.tasks_created
    assert created == (0 if retryable else 1)


async def test_a_submit_that_never_answers_times_out_as_unknown(sim, body):
    sim.script("submit", "hang_after_create")
    async with NovitaClient(sim.base_url, SIM_KEY, timeouts=Timeouts(submit_total=0.3)) as client:
        with pytest.raises(SubmitOutcomeUnknown, match="no answer"):
            await client.submit(SUBMIT_PATH, body)
    assert sim.stats.tasks_created == 1


async def test_429_carries_retry_after(sim, body):
    sim.script("submit", "429")
    async with NovitaClient(sim.base_url, SIM_KEY) as client:
        with pytest.raises(RateLimited) as caught:
            await client.submit(SUBMIT_PATH, body)
    assert caught.value.retry_after == 1.0


async def test_server_side_rate_limit_answers_429(start_sim, body):
    sim = await start_sim(submit_limit=2, limit_window_s=60)
    async with NovitaClient(sim.base_url, SIM_KEY) as client:
        for _ in range(2):
            await client.submit(SUBMIT_PATH, body)
        with pytest.raises(RateLimited) as caught:
            await client.submit(SUBMIT_PATH, body)
    assert caught.value.retry_after and 1 <= caught.value.retry_after <= 60
    assert sim.stats.rate_limited["submit"] == 1


@pytest.mark.parametrize("status", [401, 403])
async def test_wrong_key_is_an_auth_error_that_stops_the_run(start_sim, body, status):
    sim = await start_sim(auth_failure_status=status)
    async with NovitaClient(sim.base_url, "wrong-key") as client:
        with pytest.raises(AuthError) as caught:
            await client.submit(SUBMIT_PATH, body)
    assert caught.value.stops_run and caught.value.status == status
    assert "wrong-key" not in str(caught.value)


async def test_out_of_balance_stops_the_run(start_sim, body):
    sim = await start_sim(balance_usd=0.5)
    async with NovitaClient(sim.base_url, SIM_KEY) as client:
        with pytest.raises(BalanceExhausted) as caught:
            await client.submit(SUBMIT_PATH, body)  # $0.70 with sound
    assert caught.value.stops_run and caught.value.reason == "BILLING_BALANCE_NOT_ENOUGH"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"duration": 7}, "INVALID_REQUEST_BODY"),
        ({"duration": "5"}, "INVALID_REQUEST_BODY"),  # an integer here, not the string
        ({"image": "data:image/png;base64,AAAA"}, "INVALID_IMAGE_FORMAT"),
        ({"prompt": "x" * 2501}, "INVALID_REQUEST_BODY"),
    ],
)
async def test_the_simulator_refuses_what_the_api_refuses(sim, body, change, reason):
    async with NovitaClient(sim.base_url, SIM_KEY) as client:
        with pytest.raises(InvalidRequest) as caught:
            await client.submit(SUBMIT_PATH, {**body, **change})
    assert caught.value.reason == reason and not caught.value.retryable
    assert sim.stats.tasks_created == 0


async def test_too_small_image_is_refused_with_its_reason(sim, image):
    small = base64.b64encode(image("s.png", 200, 200).read_bytes()).decode()
    async with NovitaClient(sim.base_url, SIM_KEY) as client:
        with pytest.raises(InvalidRequest) as caught:
            await client.submit(SUBMIT_PATH, {"image": small, "prompt": "p"})
    assert caught.value.reason == "INVALID_IMAGE_SIZE"


async def test_poll_errors_are_all_retryable_and_unknown_ids_are_not_found(sim):
    sim.script("poll", "500", "503", "502_html", "429")
    async with NovitaClient(sim.base_url, SIM_KEY) as client:
        for expected in (ServerError, ServerError, ServerError, RateLimited):
            with pytest.raises(expected) as caught:
                await client.task_result("anything")
            assert caught.value.retryable
        with pytest.raises(TaskNotFound):
            await client.task_result("no-such-task")


async def test_a_task_id_is_sent_whole_in_the_poll_url(sim, body):
    """The poll URL is built by hand: a ``#`` or ``&`` in an id must be encoded, not cut
    the id short (which would poll another task)."""
    async with NovitaClient(sim.base_url, SIM_KEY) as client:
        task_id = await client.submit(SUBMIT_PATH, body)
        assert (await client.task_result(task_id)).task_id == task_id
        for suffix in ("#x", "&task_id=other", " x", "/x"):
            with pytest.raises(TaskNotFound):
                await client.task_result(task_id + suffix)


async def test_a_dropped_poll_is_resent_once_by_aiohttp_then_surfaces(sim):
    """aiohttp re-sends an idempotent GET once on a dropped keep-alive connection (never a
    POST). Harmless for polls; this pins the behaviour the submit path must not rely on."""
    async with NovitaClient(sim.base_url, SIM_KEY) as client:
        with pytest.raises(TaskNotFound):
            await client.task_result("warm-up")  # leaves a keep-alive connection to reuse
        sim.script("poll", "drop", "drop")
        with pytest.raises(TransportError) as caught:
            await client.task_result("anything")
    assert caught.value.retryable
    assert sim.stats.polls == 3


async def test_wrong_base_path_stops_the_run(sim, body):
    async with NovitaClient(sim.base_url + "/nope", SIM_KEY) as client:
        with pytest.raises(EndpointNotFound):
            await client.submit(SUBMIT_PATH, body)


async def test_connection_refused_is_retryable_because_nothing_was_sent(body):
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with NovitaClient(f"http://127.0.0.1:{port}", SIM_KEY) as client:
        with pytest.raises(TransportError) as caught:
            await client.submit(SUBMIT_PATH, body)
    assert caught.value.retryable


async def test_the_key_goes_to_the_api_and_never_to_the_video_host(sim, body, tmp_path):
    async with NovitaClient(sim.base_url, SIM_KEY) as client:
        task_id = await client.submit(SUBMIT_PATH, body)
        sim.advance(10)
        result = await client.task_result(task_id)
    async with aiohttp.ClientSession() as session:
        _, size, check = await download(session, result.video_url, tmp_path / "v.mp4", 5)
    assert size == (tmp_path / "v.mp4").stat().st_size > 1000
    assert check.whole and check.duration_s == 5 and check.problem is None
    assert (tmp_path / "v.mp4").read_bytes()[4:8] == b"ftyp"  # a real MP4
    assert sim.stats.media_requests == 1
    assert sim.stats.media_with_auth_header == 0
    assert SIM_KEY not in repr(client)


def test_parse_task_result_is_lenient_about_missing_and_string_fields():
    result = parse_task_result(
        "t1", {"task": {"status": "TASK_STATUS_NEW_THING"}, "videos": "oops"}
    )
    assert (result.task_id, result.status, result.video_url, result.eta_s) == (
        "t1",
        "TASK_STATUS_NEW_THING",
        None,
        None,
    )
    result = parse_task_result(
        "t1",
        {
            "task": {"eta": "12", "progress_percent": "40"},
            "videos": [{"video_url": "u", "video_url_ttl": "3600"}],
        },
    )
    assert (result.status, result.eta_s, result.progress_percent, result.video_url_ttl_s) == (
        "TASK_STATUS_UNKNOWN", 12.0, 40.0, 3600,
    )  # fmt: skip


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after_seconds({"Retry-After": "7"}) == 7.0
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert (
        retry_after_seconds({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    )  # in the past
