"""A rate of requests, as a person writes it (``20/min``, ``5/s``): what the options,
the limiters and the simulator's server-side limits all read."""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*([a-z]+?)s?\s*$")


@dataclass(frozen=True)
class Rate:
    """A number of requests per period, parsed from text such as ``20/min`` or ``5/s``."""

    count: float
    period_s: float

    @classmethod
    def parse(cls, text: str) -> Rate:
        match = _RATE.match(text.lower())
        if not match or match.group(2) not in _UNITS or float(match.group(1)) <= 0:
            raise ValueError(f"a rate looks like 20/min or 5/s, not {text!r}")
        return cls(float(match.group(1)), _UNITS[match.group(2)])

    @property
    def per_second(self) -> float:
        return self.count / self.period_s

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "min", 3600.0: "h"}.get(self.period_s, f"{self.period_s}s")
        return f"{self.count:g}/{unit}"
