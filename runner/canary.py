"""The canary: at first contact, one task per model goes alone and the rest wait.

Novita's pages leave the wire form of some fields open (``runner.wire_forms``). If our
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

import asyncio
import heapq
import itertools
import json
import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from jobs import model_of, request_from_json
from jobs.contract import Model
from runner.records import DOWNLOAD_FAILED, DOWNLOADED, TaskEvent, TaskRecord, TaskStatus
from runner.state import RunState
from runner.wire_forms import WireForms, fields_with_forms, names_the_picture

log = logging.getLogger(__name__)

CANARY_META = "canary"  # the ledger's meta: {model: {"task": key, "gate": mode, "at": t}}


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
_SETBACKS = frozenset(
    {
        TaskStatus.FAILED,
        TaskStatus.STALLED,
        TaskStatus.LOST,
        TaskStatus.EXPIRED,
        DOWNLOAD_FAILED,
    }
)


@dataclass
class _Gate:
    """A model's canary (``field`` None) or the gate of one field of a model."""

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


class SubmitQueue:
    """The tasks to submit, in ledger order, behind the gates. Workers take the next
    task that may go (:meth:`get`), say how its submit went (:meth:`sent`); the
    ledger's events (:meth:`hear`) open gates, send a second canary, or hold."""

    def __init__(
        self,
        tasks: list[TaskRecord],
        state: RunState,
        wire: WireForms,
        mode: CanaryMode = CanaryMode.SUCCEEDED,
        *,
        download: bool = True,
        in_flight: list[TaskRecord] | None = None,
    ):
        self.state = state
        self.wire = wire
        self.mode = mode
        self.download = download
        self._order = itertools.count()
        self._ready: list[tuple[int, int, TaskRecord]] = []
        self._gates: dict[str, _Gate] = {}
        self._probing: dict[str, list[_Gate]] = {}  # task key -> the gates it probes
        self._used: dict[str, tuple[Model, tuple[str, ...]]] = {}  # by task key
        self._passed = self._canaries_passed() if mode != CanaryMode.OFF else set()
        self._candidates: dict[str, deque[str]] = {}  # model -> canary candidates, in order
        self._pending_by_model: Counter[str] = Counter()
        self._closed = False
        self._wake = asyncio.Event()
        for record in in_flight or []:
            self._adopt(record)
        for record in tasks:
            self.add(record)

    # --- what workers call -------------------------------------------------------------

    def add(self, record: TaskRecord) -> None:
        """A task to submit (at start, or a canary row sent again)."""
        model, used = self._fields_of(record)
        self._pending_by_model[model.name] += 1
        canary = self.mode != CanaryMode.OFF and model.name not in self._passed
        if canary and _first_frame(model) in used:  # a canary sends a local picture
            self._candidates.setdefault(model.name, deque()).append(record.task_key)
        heapq.heappush(self._ready, (record.position, next(self._order), record))
        self._notify()

    async def get(self, may_go: Callable[[], bool]) -> TaskRecord | None:
        """The next task that may go now; waits while a gate's probe is in flight;
        None when nothing more will go (or ``may_go`` says stop)."""
        while True:
            if self._closed or not may_go():
                return None
            wake = self._wake
            record = self._next_ready()
            if record is not None:
                return record
            if not any(g.probe for g in self._gates.values() if not g.open and not g.held):
                return None  # no probe in flight: no gate will open
            await wake.wait()

    def sent(self, record: TaskRecord, outcome: Sent, field_refused: str | None = None) -> None:
        """How a task's submit went: opens gates on acceptance, holds a gate whose
        forms were all refused, lets the next task probe after a free refusal."""
        self._pending_by_model[self._fields_of(record)[0].name] -= 1
        gates = self._probing.get(record.task_key, [])
        for gate in list(gates):
            if outcome == Sent.CREATED:
                gate.created = True
                if gate.field_name is not None or self.mode == CanaryMode.ACCEPTED:
                    self._open(gate)
            elif outcome == Sent.FORMS_REFUSED and self._covers(gate, field_refused):
                self._hold(gate, f"every form of {field_refused} was refused")
            elif outcome == Sent.UNKNOWN and gate.field_name is None:
                self._setback(gate, record.task_key, "got no answer to its submit", None)
            else:  # refused for itself, or not sent: nothing was made, the next one probes
                self._again(gate)
        self._notify()

    def close(self) -> None:
        """Nothing more goes (a stop): every waiting worker returns."""
        self._closed = True
        self._notify()

    def wake(self) -> None:
        self._notify()

    @property
    def held(self) -> dict[str, tuple[int, str]]:
        """Gates that hold tasks (a model, or a model and a field): how many, and why."""
        return {g.name: (g.held_count, g.held) for g in self._gates.values() if g.held}

    # --- what the ledger tells -----------------------------------------------------------

    def hear(self, event: TaskEvent) -> None:
        """A run's listener (``RunState.listeners``): the canary's video opens its
        gate; a failure of it sends one more canary or holds."""
        for gate in list(self._probing.get(event.task_key, [])):
            if gate.field_name is not None or not gate.created or gate.open:
                continue
            done = DOWNLOADED if self.download else TaskStatus.SUCCEEDED
            if event.what == done:
                self.wire.succeeded(gate.model, gate.probe_used)
                self._pass(gate, event.task_key)
            elif event.what in _SETBACKS:
                self._setback(gate, event.task_key, f"ended {event.what}", event.reason)
        self._notify()

    # --- inside --------------------------------------------------------------------------

    def _adopt(self, record: TaskRecord) -> None:
        """A task the API already made, in flight when the run starts (a run that was
        cut off while its canary ran): it is the canary of its model, if the model has
        not passed, and no second one is sent while it runs."""
        model, used = self._fields_of(record)
        if self.mode == CanaryMode.OFF or model.name in self._passed:
            return
        gate = self._gate(model, None)
        if gate.probe is None:
            gate.probe, gate.probe_used, gate.created = record.task_key, used, True
            self._probing.setdefault(record.task_key, []).append(gate)

    def _next_ready(self) -> TaskRecord | None:
        while self._ready:
            _, _, record = heapq.heappop(self._ready)
            gates = self._gates_of(record)
            held = next((g for g in gates if g.held), None)
            if held is not None:
                held.held_count += 1
                continue
            closed = [g for g in gates if not g.open]
            busy = next((g for g in closed if not self._may_probe(g, record)), None)
            if busy is not None:
                busy.waiting.append(record)
                continue
            used = self._fields_of(record)[1]
            for gate in closed:
                gate.probe, gate.probe_used, gate.created = record.task_key, used, False
                self._probing.setdefault(record.task_key, []).append(gate)
            if closed:
                self._announce(record, closed)
            return record
        return None

    def _may_probe(self, gate: _Gate, record: TaskRecord) -> bool:
        if gate.probe is not None:
            return False
        if gate.field_name is not None:
            return True
        candidates = self._candidates.get(gate.model.name)
        return not candidates or candidates[0] == record.task_key

    def _gates_of(self, record: TaskRecord) -> list[_Gate]:
        if self.mode == CanaryMode.OFF:
            return []
        model, used = self._fields_of(record)
        gates = []
        if model.name not in self._passed:
            gates.append(self._gate(model, None))
        for name in used:  # the first frame's form is the canary's to prove
            if name != _first_frame(model) and not self.wire.settled(model, name):
                gates.append(self._gate(model, name))
        return gates

    def _gate(self, model: Model, name: str | None) -> _Gate:
        key = f"{model.name}|{name or ''}"
        if key not in self._gates:
            self._gates[key] = _Gate(model, name)
        return self._gates[key]

    def _fields_of(self, record: TaskRecord) -> tuple[Model, tuple[str, ...]]:
        known = self._used.get(record.task_key)
        if known is None:
            request = request_from_json(record.request_json)
            known = (request.model, tuple(fields_with_forms(request)))
            self._used[record.task_key] = known
        return known

    def _covers(self, gate: _Gate, name: str | None) -> bool:
        """Whether a gate answers for a field: its own, or the first frame (the canary)."""
        if gate.field_name is not None:
            return gate.field_name == name
        return name is not None and name == _first_frame(gate.model)

    def _open(self, gate: _Gate) -> None:
        gate.open = True
        self._release(gate)

    def _pass(self, gate: _Gate, key: str) -> None:
        self._passed.add(gate.model.name)
        passed = self._canaries_meta() | {gate.model.name: {"task": key, "gate": str(self.mode)}}
        self.state.set_meta(**{CANARY_META: json.dumps(passed, sort_keys=True)})
        log.warning(
            "%s: the canary %s passed (%s); the other %d task(s) of %s follow",
            gate.model.name,
            key,
            "its video is here, whole" if self.mode == CanaryMode.SUCCEEDED else "created",
            len(gate.waiting),
            gate.model.name,
        )
        self._open(gate)

    def _again(self, gate: _Gate) -> None:
        """The probe settled nothing (nothing was made): the next task probes."""
        self._drop_probe(gate)
        self._release(gate)

    def _setback(self, gate: _Gate, key: str, what: str, reason: str | None) -> None:
        """The canary may have been billed and did not pass: one more canary (the same
        row in the next picture form when its picture is named), then a hold."""
        said = f"the canary {key} {what}" + (f": {reason}" if reason else "")
        picture = _first_frame(gate.model)
        if not gate.second_chance:
            self._hold(gate, said)
            return
        gate.second_chance = False
        form = None
        if picture and picture in gate.probe_used and reason and names_the_picture(reason):
            form = self.wire.picture_failed(gate.model, picture)
        self._drop_probe(gate)
        if form is not None:
            self.state.requeue([key], f"its first attempt failed for the wire form: {reason}")
            self._candidates.setdefault(gate.model.name, deque()).appendleft(key)
            log.warning(
                "%s: %s. Its first attempt failed for the wire form, not for its content: "
                "sent again with %s; if that fails too, %s stops",
                gate.model.name,
                said,
                form.describe(),
                gate.model.name,
            )
            self.add(self.state.get(key))
        else:
            log.warning(
                "%s: %s. The next task goes as a second canary; if it fails too, %s stops",
                gate.model.name,
                said,
                gate.model.name,
            )
        self._release(gate)

    def _hold(self, gate: _Gate, why: str) -> None:
        gate.held = why
        self._drop_probe(gate)
        gate.held_count += len(gate.waiting)
        gate.waiting.clear()
        log.error(
            "%s: %s; its tasks are held pending, nothing more is paid for them. Look at "
            "the reason, then `resume` sends a new canary (or --wire FIELD=FORM, "
            "--canary off)",
            gate.name,
            why,
        )

    def _drop_probe(self, gate: _Gate) -> None:
        if gate.probe is not None:
            probing = self._probing.get(gate.probe, [])
            if gate in probing:
                probing.remove(gate)
            candidates = self._candidates.get(gate.model.name)
            if gate.field_name is None and candidates and candidates[0] == gate.probe:
                candidates.popleft()
        gate.probe = None

    def _release(self, gate: _Gate) -> None:
        for record in gate.waiting:
            heapq.heappush(self._ready, (record.position, next(self._order), record))
        gate.waiting.clear()

    def _announce(self, record: TaskRecord, gates: list[_Gate]) -> None:
        model = gates[0].model.name
        others = self._pending_by_model[model] - 1
        if any(g.field_name is None for g in gates):
            wait = "its video is here" if self.mode == CanaryMode.SUCCEEDED else "the API takes it"
            log.warning(
                "%s: sent alone as the canary of %s; the other %d task(s) of it follow "
                "once %s (--canary off skips this)",
                record.task_key,
                model,
                others,
                wait,
            )
        else:
            fields = ", ".join(g.field_name or "" for g in gates)
            log.warning(
                "%s: sent alone: the first task with %s (%s); the others with it follow "
                "once the API takes it",
                record.task_key,
                fields,
                model,
            )

    def _canaries_meta(self) -> dict[str, object]:
        try:
            data = json.loads(self.state.meta().get(CANARY_META) or "{}")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def _canaries_passed(self) -> set[str]:
        """Models whose canary passed in this folder, or of which a task succeeded (a
        folder from before the canary)."""
        passed = set(self._canaries_meta())
        for record in self.state.tasks([TaskStatus.SUCCEEDED]):
            passed.add(model_of(record.request_json))
        return passed

    def _notify(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()


def _first_frame(model: Model) -> str | None:
    return model.image_fields[0] if model.image_fields else None
