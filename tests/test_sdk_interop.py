"""The official SDK (`novita-client`, strict dataclass parsing) accepts the simulator's
answers: the proof that the stand-in speaks the real shape, not just our own client's."""

from __future__ import annotations

import base64

import pytest
from novita_client import NovitaClient as OfficialClient
from novita_client.proto import V3TaskResponseStatus

from jobs import DEFAULT_MODEL, model_named
from runner.simulator import SimConfig, simulator_in_thread
from tests.conftest import SIM_KEY

SUBMIT_PATH = model_named(DEFAULT_MODEL).path


@pytest.fixture
def body(image) -> dict:
    encoded = base64.b64encode(image("f.png", 640, 360).read_bytes()).decode()
    return {"image": encoded, "prompt": "the official sdk", "duration": 5, "sound": False}


def test_the_official_sdk_parses_every_stage_of_a_task(body):
    with simulator_in_thread(
        SimConfig(api_key=SIM_KEY, queue_s=5, generation_s=5, jitter=0)
    ) as sim:
        sdk = OfficialClient(SIM_KEY, base_url=sim.base_url)
        task_id = sdk._post(SUBMIT_PATH, body)["task_id"]

        queued = sdk.async_task_result(task_id)
        assert queued.task.status == V3TaskResponseStatus.TASK_STATUS_QUEUED
        assert not queued.finished() and queued.task.eta > 0

        sim.advance(7)
        running = sdk.async_task_result(task_id)
        assert running.task.status == V3TaskResponseStatus.TASK_STATUS_PROCESSING
        assert 0 < running.task.progress_percent < 100

        sim.advance(10)
        done = sdk.wait_for_task_v3(task_id)  # returns on its first poll: no sleeping
        assert done.task.status == V3TaskResponseStatus.TASK_STATUS_SUCCEED
        assert done.get_video_urls()[0].startswith(sim.media_url)
        assert done.videos[0].video_url_ttl == 3600 and done.videos[0].video_type == "mp4"
        info = done.extra.debug_info
        assert info.submit_time_ms < info.execute_time_ms < info.complete_time_ms
        assert isinstance(done.extra.seed, int)


def test_the_official_sdk_parses_a_failed_task(body):
    with simulator_in_thread(SimConfig(api_key=SIM_KEY, queue_s=0, generation_s=0)) as sim:
        sim.script_fates("fail")
        sdk = OfficialClient(SIM_KEY, base_url=sim.base_url)
        task_id = sdk._post(SUBMIT_PATH, body)["task_id"]
        result = sdk.wait_for_task_v3(task_id)
    assert result.task.status == V3TaskResponseStatus.TASK_STATUS_FAILED
    assert result.task.reason == SimConfig.fail_reason
    assert result.videos == []
