"""A local stand-in for the Novita API, so that demos, tests and benchmarks need no key.

A sub-system of its own, the client's independent counterpart: it speaks the documented
protocol (shared/novita-api.md) and shares only the job contract (``jobs``) and the rate
parser with the runner, never the client, the engine or the ledger (the layers test
holds it to that). Its parts:

- ``state``: its settings (:class:`SimConfig`), its books (:class:`SimStats`), its tasks;
- ``wire``: the documented shapes of every answer and error;
- ``readings``: each plausible reading of what the pages leave open, on demand;
- ``faults``: scripted faults, outages and fault rates;
- ``video``: the videos it serves, made from each task's submitted image (PyAV);
- ``video_host``: its second listener, the videos behind signed links;
- ``server``: the aiohttp routes and the tasks' lives (:class:`Simulator`);
- ``hosting``: ``kling-batch sim`` and a simulator on a thread of its own.
"""

from runner.simulator.hosting import (
    add_sim_arguments,
    run_simulator,
    simulator_in_thread,
    strict_docs,
)
from runner.simulator.readings import Readings
from runner.simulator.server import Simulator
from runner.simulator.state import SimConfig, SimStats, SimTask

__all__ = [
    "Readings",
    "SimConfig",
    "SimStats",
    "SimTask",
    "Simulator",
    "add_sim_arguments",
    "run_simulator",
    "simulator_in_thread",
    "strict_docs",
]
