"""The options' defaults are the engine's: one number in one place."""

from __future__ import annotations

from runner.engine.wiring import EngineConfig
from runner.run.flow import engine_config
from runner.run.options import RunOptions


def test_options_left_alone_make_the_engine_as_it_stands() -> None:
    assert engine_config(RunOptions()) == EngineConfig()


def test_first_poll_reaches_the_poll_policy_under_its_own_name() -> None:
    options = RunOptions(first_poll_s=7.5, task_timeout_s=99.0)
    policy = engine_config(options).poll_policy
    assert (policy.first_poll_s, policy.task_timeout_s) == (7.5, 99.0)
