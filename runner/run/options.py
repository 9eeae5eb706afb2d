"""Every option of a spending command (``run``, ``resume``, ``rerun``), in one place.

Each field of :class:`RunOptions` carries its default, its unit in its name, the flag
that sets it, its help text, how its text is read, and the key under which a run folder
saves it (the run folder's ``meta.options`` JSON, unchanged since the first runs, so old
folders read back as they were written). The command line is generated from these
fields (:func:`option_specs`); the engine and the poll policy take their values from a
:class:`RunOptions`. Adding an option is adding a field here.

Precedence: given on the command line, then saved in the run folder, then the default.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from jobs import MODELS
from runner.core.rates import Rate
from runner.engine.poll_timing import PollPolicy
from runner.engine.wiring import EngineConfig

# The engine's own defaults are the options' defaults: one place for each number.
_ENGINE = EngineConfig()
_POLL = PollPolicy()


def parse_rate(text: str) -> Rate:
    return Rate.parse(text)


def parse_usd(text: str) -> float:
    """A budget: zero or more dollars, or ``inf`` to lift it."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # refuses nan too
        raise ValueError(
            f"a budget is dollars, 0 or more (e.g. 25 or 12.50; inf lifts it), not {text!r}"
        )
    return value


def parse_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < math.inf:
        raise ValueError(f"seconds, more than 0 (e.g. 1800), not {text!r}")
    return value


def parse_count(text: str) -> int:
    """A whole number, 0 or more (0 turns the thing off)."""
    if not text.strip().isdigit():
        raise ValueError(f"a whole number, 0 or more (0 turns it off), not {text!r}")
    return int(text.strip())


CANARY_MODES = ("succeeded", "accepted", "off")


def parse_canary(text: str) -> str:
    mode = text.strip().lower()
    if mode not in CANARY_MODES:
        raise ValueError(f"the canary is one of {', '.join(CANARY_MODES)}, not {text!r}")
    return mode


def parse_wire(text: str) -> dict[str, str]:
    """``--wire image=data-uri,voice_list=ids`` (or ``MODEL.FIELD=FORM`` for one model):
    each field named must have that form on some model (``jobs.forms``)."""
    forced: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, equals, form = (x.strip() for x in part.partition("="))
        model_name, _, field_name = name.rpartition(".")
        models = [MODELS[model_name]] if model_name in MODELS else list(MODELS.values())
        specs = [m.by_name[field_name] for m in models if m.takes(field_name)]
        forms = sorted({f for spec in specs for f in spec.forms})
        if not equals or (model_name and model_name not in MODELS) or not forms:
            open_fields = sorted({s.name for m in MODELS.values() for s in m.fields if s.forms})
            raise ValueError(
                f"--wire takes FIELD=FORM (or MODEL.FIELD=FORM) for a field whose form "
                f"the pages leave open ({', '.join(open_fields)}), not {part!r}"
            )
        if form not in forms:
            raise ValueError(f"--wire {name}: its forms are {', '.join(forms)}, not {form!r}")
        forced[name] = form
    return forced


def parse_wire_text(text: str) -> str:
    """The option's text, checked, in one spelling (what a folder saves)."""
    return ",".join(f"{name}={form}" for name, form in sorted(parse_wire(text).items()))


@dataclass(frozen=True)
class OptionSpec:
    """How one option meets the user and the run folder."""

    name: str  # the RunOptions field
    flag: str
    saved_as: str  # key in the run folder's saved options
    help: str
    parse: Callable[[str], Any] | None  # None: a switch (store_const of ``switch_value``)
    metavar: str | None = None
    switch_value: Any = None
    default: Any = None

    def to_saved(self, value: Any) -> Any:
        if self.parse is None:  # a switch is saved as "was it given": no_download
            return value == self.switch_value
        return str(value) if isinstance(value, Rate) else value

    def from_saved(self, value: Any) -> Any:
        if self.parse is None:
            return self.switch_value if value else self.default
        if value is None:
            return None
        if isinstance(value, str):  # rates, the canary, wire forms: read as typed
            return self.parse(value)
        return int(value) if self.parse is parse_count else float(value)


def _option(
    flag: str,
    saved_as: str,
    help: str,
    parse: Callable[[str], Any] | None,
    metavar: str | None = None,
    switch_value: Any = None,
) -> dict[str, Any]:
    return {
        "flag": flag,
        "saved_as": saved_as,
        "help": help,
        "parse": parse,
        "metavar": metavar,
        "switch_value": switch_value,
    }


@dataclass(frozen=True)
class RunOptions:
    submit_rate: Rate = field(
        default=_ENGINE.submit_rate,
        metadata=_option(
            "--submit-rate",
            "submit_rate",
            "submits, shared by all workers, spaced evenly, 2%% under the rate",
            parse_rate,
        ),
    )
    poll_rate: Rate = field(
        default=_ENGINE.poll_rate,
        metadata=_option("--poll-rate", "poll_rate", "Task Result polls, likewise", parse_rate),
    )
    task_timeout_s: float = field(
        default=_POLL.task_timeout_s,
        metadata=_option(
            "--task-timeout",
            "task_timeout",
            "seconds from its submit before a task the API still runs is `stalled`",
            parse_seconds,
            "SECONDS",
        ),
    )
    first_poll_s: float = field(
        default=_POLL.first_poll_s,
        metadata=_option(
            "--first-poll-s",
            "first_poll_s",
            "earliest first look at a new task (taken when the poll rate has room); "
            "later polls follow its eta or progress",
            parse_seconds,
            "SECONDS",
        ),
    )
    download: bool = field(
        default=_ENGINE.download,
        metadata=_option(
            "--no-download", "no_download", "keep video URLs, don't download", None, None, False
        ),
    )
    budget_usd: float | None = field(
        default=None,
        metadata=_option(
            "--budget",
            "budget",
            "stop submitting before the run folder's estimated spend would pass this "
            "(inf lifts it)",
            parse_usd,
            "USD",
        ),
    )
    max_failure_streak: int = field(
        default=_ENGINE.max_failure_streak,
        metadata=_option(
            "--max-failure-streak",
            "max_failure_streak",
            "stop submitting when the last N tasks to finish all failed (in flight go on; "
            "exit 1; resume continues); 0 turns it off",
            parse_count,
            "N",
        ),
    )
    canary: str = field(
        default=_ENGINE.canary.value,
        metadata=_option(
            "--canary",
            "canary",
            "first contact: each model's first task goes alone and the rest wait until its "
            "video is whole (succeeded), the API has made it (accepted), or not at all (off)",
            parse_canary,
            "succeeded|accepted|off",
        ),
    )
    wire: str = field(
        default="",
        metadata=_option(
            "--wire",
            "wire",
            "force the wire form of fields the pages leave open, e.g. image=data-uri or "
            "voice_list=ids,kling-v3.0-pro-i2v.multi_prompt=alone (default: learned)",
            parse_wire_text,
            "FIELD=FORM,...",
        ),
    )
    progress_every_s: float = field(
        default=_ENGINE.progress_every_s,
        metadata=_option(
            "--progress-every",
            "progress_every",
            "without a terminal, a progress line this often (a terminal gets a live panel)",
            parse_seconds,
            "SECONDS",
        ),
    )

    @classmethod
    def resolve(cls, saved: Mapping[str, Any], given: Mapping[str, Any]) -> RunOptions:
        """``given`` (by field name; None: not given) beats ``saved`` (the run folder's
        saved options, by their saved keys) beats the default."""
        values: dict[str, Any] = {}
        for spec in option_specs():
            if spec.saved_as in saved:
                values[spec.name] = spec.from_saved(saved[spec.saved_as])
            if given.get(spec.name) is not None:
                values[spec.name] = given[spec.name]
        return replace(cls(), **values)

    def saved(self) -> dict[str, Any]:
        """What the run folder keeps, so that ``resume`` runs it the same way."""
        return {s.saved_as: s.to_saved(getattr(self, s.name)) for s in option_specs()}


def option_specs() -> list[OptionSpec]:
    defaults = RunOptions()
    return [
        OptionSpec(name=f.name, default=getattr(defaults, f.name), **f.metadata)
        for f in fields(RunOptions)
    ]
