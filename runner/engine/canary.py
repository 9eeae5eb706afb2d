"""The canary: at first contact, one task per model goes alone and the rest wait.

Novita's pages leave the wire form of some fields open (``runner.api.wire_forms``). If our
reading is wrong, every task of a night is refused (free, but the night is lost) or,
worse, taken and failed after billing. So the first submit of a run folder for each
model goes alone (one per model, side by side), and that model's other tasks wait
until it passes: its video is downloaded and whole (``--canary succeeded``, the
default), or the API has created it (``--canary accepted``). A canary that passed is
kept in the ledger (meta ``canary``), so ``resume`` and ``rerun`` do not repeat it; an
older folder where a task of the model succeeded has passed too.

The same gate, on acceptance, stands in front of each field whose form is not settled
for the API (voices, multi-shot prompts, a local end frame): the first task that sends
it goes alone, so a wrong form costs one free refusal per form, not one per worker.

A canary that fails is not the end at once: a failure that names its picture sends the
same row again in the next picture form (its first attempt failed for the wire form,
not its content); any other failure sends the next task as a second canary. A second
failure holds the model: its tasks stay pending, nothing more is paid for them, and
the run says why. At most two billed tasks per model learn the API's reading.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from enum import StrEnum

from jobs import model_of
from jobs.contract import Model
from runner.api.wire_forms import Adaptation
from runner.core.records import DOWNLOAD_FAILED, TaskRecord, TaskStatus
from runner.ledger.transitions import RunState

log = logging.getLogger(__name__)

CANARY_META = "canary"  # the ledger's meta: {model: {"task": key, "gate": mode}}


class CanaryMode(StrEnum):
    SUCCEEDED = "succeeded"  # the model's other tasks wait for the canary's whole video
    ACCEPTED = "accepted"  # ... for the API to create it
    OFF = "off"  # no canary, no field gates: every task as it comes


class Sent(StrEnum):
    """What one submit did, as the queue needs to know it."""

    CREATED = "created"  # the API made it (paid)
    REFUSED = "refused"  # refused at submit for its content or input: nothing made
    FORMS_REFUSED = "forms refused"  # every form of a field was refused: nothing made
    UNKNOWN = "unknown"  # no usable answer: it may have been made
    NOT_SENT = "not sent"  # left pending (a stop, the budget) or failed before sending


# A canary's failures after billing: the first gets one more canary, the second holds.
SETBACKS = frozenset(
    {
        TaskStatus.FAILED,
        TaskStatus.STALLED,
        TaskStatus.LOST,
        TaskStatus.EXPIRED,
        DOWNLOAD_FAILED,
    }
)


@dataclass
class Gate:
    """A model's canary (``field_name`` None) or the gate of one field of a model: the
    task in flight for it (its probe), the tasks waiting behind it, and its state."""

    model: Model
    field_name: str | None
    probe: str | None = None  # the task in flight for it
    probe_used: tuple[str, ...] = ()  # the fields with forms that task sends
    created: bool = False  # the probe was made by the API
    open: bool = False
    held: str | None = None  # why its tasks are held
    held_count: int = 0  # how many
    second_chance: bool = True  # a canary's one more try after a failure
    waiting: list[TaskRecord] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.model.name + (f" {self.field_name}" if self.field_name else "")


def first_frame(model: Model) -> str | None:
    """The model's first-frame field: its form is the canary's to prove."""
    return model.image_fields[0] if model.image_fields else None


def canaries_passed(state: RunState) -> set[str]:
    """Models whose canary passed in this folder, or of which a task succeeded (a
    folder from before the canary)."""
    passed = set(_canaries_meta(state))
    for record in state.tasks([TaskStatus.SUCCEEDED]):
        passed.add(model_of(record.request_json))
    return passed


def record_pass(state: RunState, gate: Gate, key: str, mode: CanaryMode) -> None:
    """Keep the passing in the ledger (``resume`` and ``rerun`` do not repeat it), and
    say so."""
    passed = _canaries_meta(state) | {gate.model.name: {"task": key, "gate": str(mode)}}
    state.set_meta(**{CANARY_META: json.dumps(passed, sort_keys=True)})
    log.warning(
        "%s: the canary %s passed (%s); the other %d task(s) of %s follow",
        gate.model.name,
        key,
        "its video is here, whole" if mode == CanaryMode.SUCCEEDED else "created",
        len(gate.waiting),
        gate.model.name,
    )


def _canaries_meta(state: RunState) -> dict[str, object]:
    try:
        data = json.loads(state.meta().get(CANARY_META) or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def announce_probe(record: TaskRecord, gates: list[Gate], others: int, mode: CanaryMode) -> None:
    """A task that goes alone: a model's canary, or the first with an open field."""
    model = gates[0].model.name
    if any(g.field_name is None for g in gates):
        wait = "its video is here" if mode == CanaryMode.SUCCEEDED else "the API takes it"
        log.warning(
            "%s: sent alone as the canary of %s; the other %d task(s) of it follow "
            "once %s (--canary off skips this)",
            record.task_key,
            model,
            others,
            wait,
        )
        return
    log.warning(
        "%s: sent alone: the first task with %s (%s); the others with it follow once the "
        "API takes it",
        record.task_key,
        ", ".join(g.field_name or "" for g in gates),
        model,
    )


def announce_setback(gate: Gate, said: str, form: Adaptation | None) -> None:
    """A canary that failed, and what comes next: its row in another form, or the next."""
    model = gate.model.name
    if form is not None:
        log.warning(
            "%s: %s. Its first attempt failed for the wire form, not for its content: sent "
            "again with %s; if that fails too, %s stops",
            model,
            said,
            form.describe(),
            model,
        )
    else:
        log.warning(
            "%s: %s. The next task goes as a second canary; if it fails too, %s stops",
            model,
            said,
            model,
        )


def announce_hold(gate: Gate, why: str) -> None:
    log.error(
        "%s: %s; its tasks are held pending, nothing more is paid for them. Look at the "
        "reason, then `resume` sends a new canary (or --wire FIELD=FORM, --canary off)",
        gate.name,
        why,
    )
