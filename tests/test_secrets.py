"""The API key, a known string, must appear in no exception text, log line or file.

The client keeps the key in one header; these tests drive every error path with that
key set and search everything a user could see or paste into a bug report: the
message, the repr, and the whole formatted traceback with its chained causes."""

from __future__ import annotations

import base64
import logging
import socket
import traceback

import pytest

from jobs import DEFAULT_MODEL, model_named
from runner.api.client import NovitaClient, Timeouts
from runner.core.errors import KlingBatchError
from runner.core.logs import RUN_LOG, setup_logging
from tests.conftest import SIM_KEY

SUBMIT_PATH = model_named(DEFAULT_MODEL).path


def everything_shown(exc: BaseException) -> str:
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


@pytest.fixture
def body(image) -> dict:
    data = image("frame.png", 640, 360).read_bytes()
    return {"image": base64.b64encode(data).decode(), "prompt": "p", "duration": 5}


@pytest.mark.parametrize("fault", ["429", "500", "503", "502_html", "drop_after_create"])
async def test_submit_errors_never_show_the_key(sim, body, fault):
    sim.script("submit", fault)
    async with NovitaClient(sim.base_url, SIM_KEY) as client:
        with pytest.raises(KlingBatchError) as caught:
            await client.submit(SUBMIT_PATH, body)
    assert SIM_KEY not in everything_shown(caught.value)


async def test_auth_timeout_and_refused_connection_never_show_the_key(start_sim, body):
    wrong_key = SIM_KEY + "x"  # a wrong key is still a secret
    sim = await start_sim(auth_failure_status=401)
    sim.script("submit", "hang_after_create")
    shown = []
    async with NovitaClient(sim.base_url, wrong_key) as client:
        with pytest.raises(KlingBatchError) as caught:
            await client.task_result("any")
        shown.append(everything_shown(caught.value))
    sim.config.api_key = wrong_key
    async with NovitaClient(sim.base_url, wrong_key, timeouts=Timeouts(submit_total=0.3)) as client:
        with pytest.raises(KlingBatchError) as caught:
            await client.submit(SUBMIT_PATH, body)
        shown.append(everything_shown(caught.value))
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    async with NovitaClient(f"http://127.0.0.1:{port}", wrong_key) as client:
        with pytest.raises(KlingBatchError) as caught:
            await client.submit(SUBMIT_PATH, body)
        shown.append(everything_shown(caught.value))
    assert len(shown) == 3 and not any(wrong_key in text for text in shown)
    assert not any(SIM_KEY in text for text in shown)


def test_a_key_that_reaches_a_log_record_is_redacted_on_console_and_in_run_log(tmp_path, capsys):
    setup_logging(tmp_path, secrets=[SIM_KEY])
    log = logging.getLogger("some.library")
    log.warning("echoed header: Bearer %s", SIM_KEY)
    try:
        raise RuntimeError(f"server said: bad key {SIM_KEY}")
    except RuntimeError:
        log.exception("a library logged a traceback")
    for handler in logging.getLogger().handlers:
        handler.flush()
    written = (tmp_path / RUN_LOG).read_text(encoding="utf-8") + capsys.readouterr().err
    assert SIM_KEY not in written
    assert written.count("[REDACTED]") >= 3  # console + file, message and traceback
    setup_logging(None)
