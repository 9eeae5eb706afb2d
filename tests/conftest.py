"""Shared fixtures: real images drawn with Pillow, and the simulator on an ephemeral port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from PIL import Image

from runner.engine import EngineConfig
from runner.limits import Rate
from runner.poll import PollPolicy
from runner.simulator import SimConfig, Simulator

SIM_KEY = "sk_test_5f1e9c2a7b3d4e6f"  # a recognisable key, so tests can grep for leaks


def draw_image(path: Path, width: int = 640, height: int = 360, fmt: str | None = None) -> Path:
    """A real image file of the given size; the format follows the suffix unless given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (200, 120, 40)).save(path, format=fmt)
    return path


@pytest.fixture
def image(tmp_path: Path) -> Callable[..., Path]:
    def make(
        name: str = "frame.png", width: int = 640, height: int = 360, fmt: str | None = None
    ) -> Path:
        return draw_image(tmp_path / name, width, height, fmt)

    return make


@pytest.fixture
async def start_sim() -> AsyncIterator[Callable[..., Simulator]]:
    """Start simulators with a given config; all are stopped after the test."""
    started: list[Simulator] = []

    async def start(**overrides) -> Simulator:
        config = SimConfig(api_key=SIM_KEY, queue_s=0.05, generation_s=0.1, jitter=0.0, **overrides)
        sim = await Simulator(config).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        await sim.stop()


@pytest.fixture
async def sim(start_sim) -> Simulator:
    return await start_sim()


def fast_engine_config(**overrides) -> EngineConfig:
    """Rates and poll intervals scaled down from minutes to a test's milliseconds."""
    values = dict(
        submit_rate=Rate(200, 1),
        poll_rate=Rate(500, 1),
        poll_policy=PollPolicy(first_delay_s=0.02, min_interval_s=0.02, max_interval_s=0.2),
        progress_every_s=60.0,
        retry_base_s=0.02,
    )
    values.update(overrides)
    return EngineConfig(**values)
