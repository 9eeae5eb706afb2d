"""The simulator's faults: what goes wrong with the next request, and how each task ends.

Faults come three ways: a *script* (:meth:`Faults.script`) that makes the next requests
to an endpoint fail in a chosen order, so a test stages an exact sequence without luck;
an *outage* (switched on and off by a test, or a window of seconds in the config), for
Novita's side or the laptop's network being down; and *rates*, for realistic noise.
"""

from __future__ import annotations

import random
from collections import deque

from runner.simulator.state import (
    FATES,
    MEDIA_FAULTS,
    POLL_FAULTS,
    SUBMIT_FAULTS,
    SimConfig,
    SimStats,
)


class Faults:
    def __init__(self, config: SimConfig, stats: SimStats, rng: random.Random):
        self.config = config
        self.stats = stats
        self.rng = rng  # shared with task creation: one seed decides a whole night
        self._scripts: dict[str, deque[str]] = {
            "submit": deque(),
            "poll": deque(),
            "media": deque(),
        }
        self._fates: deque[str] = deque()
        self._outages: set[str] = set()

    def script(self, endpoint: str, *faults: str) -> None:
        allowed = {"submit": SUBMIT_FAULTS, "poll": POLL_FAULTS, "media": MEDIA_FAULTS}[endpoint]
        for fault in faults:
            if fault not in allowed:
                raise ValueError(f"{endpoint} faults are {allowed}, not {fault!r}")
        self._scripts[endpoint].extend(faults)

    def script_fates(self, *fates: str) -> None:
        for fate in fates:
            if fate not in FATES:
                raise ValueError(f"fates are {FATES}, not {fate!r}")
        self._fates.extend(fates)

    def outage(self, endpoint: str, on: bool) -> None:
        (self._outages.add if on else self._outages.discard)(endpoint)

    def next(self, endpoint: str, since_start_s: float) -> str | None:
        """The fault for the request arriving now, if any (counted in the stats)."""
        fault = "503" if self._in_outage(endpoint, since_start_s) else None
        if fault is None and self._scripts[endpoint]:
            fault = self._scripts[endpoint].popleft()
        if fault is None and endpoint in ("submit", "poll"):
            fault = self._by_rate(endpoint)
        if fault is not None:
            self.stats.faults[f"{endpoint}:{fault}"] += 1
        return fault

    def next_fate(self) -> str:
        if self._fates:
            return self._fates.popleft()
        roll, config = self.rng.random(), self.config
        if roll < config.fail_rate:
            return "fail"
        return "stall" if roll < config.fail_rate + config.stall_rate else "succeed"

    def _in_outage(self, endpoint: str, since_start_s: float) -> bool:
        if endpoint in self._outages:
            return True
        window = self.config.poll_outage_s if endpoint == "poll" else None
        return window is not None and window[0] <= since_start_s < window[1]

    def _by_rate(self, endpoint: str) -> str | None:
        roll, config = self.rng.random(), self.config
        if roll < config.error_500_rate:
            return "500"
        if roll < config.error_500_rate + config.error_503_rate:
            return "503"
        if endpoint != "submit":
            return None
        drop = config.error_500_rate + config.error_503_rate + config.drop_after_create_rate
        if roll < drop:
            return "drop_after_create"
        if roll < drop + config.error_500_after_create_rate:
            return "500_after_create"
        return None
