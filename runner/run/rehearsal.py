"""``run --simulate``: the whole job against an embedded simulator, no key, no cost.

The simulator runs on a thread of its own for the life of the command, so the account
check, a rerun's questions to the API and the batch itself all talk to one server over
real loopback HTTP, exactly as they would to Novita.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from runner.core.records import IN_FLIGHT, TaskStatus
from runner.ledger.transitions import RunState
from runner.simulator import SimConfig, simulator_in_thread

SIMULATOR_API = "embedded simulator"
# How long the embedded simulator's tasks take: short enough for a demo, long enough
# that polling by eta is visible.
EMBEDDED_SIM_TIMES: dict[str, Any] = {"queue_s": 1.0, "generation_s": 2.0}
CHAIN_VIDEO_WIDTH = 640
REHEARSAL_BALANCE_USD = 100.0  # the rehearsal account's balance at a folder's first run
BALANCE_KEY = "rehearsal_balance_usd"  # where the folder keeps what is left of it


@contextlib.contextmanager
def embedded_api(state: RunState, api_key: str) -> Iterator[str]:
    """Start the embedded simulator; yields its base URL. It starts empty, so tasks an
    earlier (crashed) process created there are adopted and a resumed rehearsal
    finishes them. A fresh folder's first submits meet a 429 and a 503, and its first
    download arrives cut short: the recovery a real night needs, shown. The rehearsal
    account's balance is the folder's: what one run spent is gone for the next, so
    ``status``'s measured spend agrees with the estimate, as it would on Novita."""
    balance = float(state.meta().get(BALANCE_KEY, REHEARSAL_BALANCE_USD))
    # A chain's links send their parents' last frames: videos wide enough to be first frames.
    chained = any(record.parent for record in state.tasks())
    config = SimConfig(
        api_key=api_key,
        seed=7,
        balance_usd=balance,
        video_width=CHAIN_VIDEO_WIDTH if chained else SimConfig.video_width,
        **EMBEDDED_SIM_TIMES,
    )
    with simulator_in_thread(config) as sim:
        for record in state.tasks([*IN_FLIGHT, TaskStatus.STALLED, TaskStatus.SUCCEEDED]):
            if record.task_id and not record.video_path:
                sim.adopt(record.task_id, record.request_json)
        if not state.sent_count():
            sim.script("submit", "429", "503")
            sim.script("media", "cut")  # a first download cut short: fetched again
        yield sim.base_url
        if not state.closed:  # a ledger rescued under the run was closed with it
            state.set_meta(**{BALANCE_KEY: repr(sim.config.balance_usd)})
