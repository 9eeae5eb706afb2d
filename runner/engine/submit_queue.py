"""The tasks to submit, in ledger order, behind the canary's gates (``runner.engine.canary``).

Workers take the next task that may go now (:meth:`SubmitQueue.get`); a task behind a
closed gate waits in that gate until it opens (its probe passed), lets the next task
probe (nothing was made), or holds (a second failed canary: its tasks stay pending).
Each task is read once (its model and the open fields it sends) and kept; a heap keeps
ledger order among the tasks that may go, so a resumed or released batch goes in the
order the manifest gave.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import Counter, deque
from collections.abc import Callable

from jobs import request_from_json
from jobs.contract import Model
from runner.api.wire_forms import WireForms, fields_with_forms, names_the_picture
from runner.core.records import DOWNLOADED, TaskEvent, TaskRecord, TaskStatus
from runner.engine.canary import (
    SETBACKS,
    CanaryMode,
    Gate,
    Sent,
    announce_hold,
    announce_probe,
    announce_setback,
    canaries_passed,
    first_frame,
    record_pass,
)
from runner.ledger.transitions import RunState


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
        more_coming: Callable[[], bool] = lambda: False,
    ):
        self.state = state
        self.wire = wire
        self.mode = mode
        self.download = download
        self._order = itertools.count()
        self._ready: list[tuple[int, int, TaskRecord]] = []
        self._gates: dict[str, Gate] = {}
        self._probing: dict[str, list[Gate]] = {}  # task key -> the gates it probes
        self._used: dict[str, tuple[Model, tuple[str, ...]]] = {}  # by task key
        self._passed = canaries_passed(state) if mode != CanaryMode.OFF else set()
        self._candidates: dict[str, deque[str]] = {}  # model -> canary candidates, in order
        self._pending_by_model: Counter[str] = Counter()
        self._closed = False
        self._more_coming = more_coming  # tasks not here yet may come (a chain's links)
        self._wake = asyncio.Event()
        for record in in_flight or []:
            self._adopt(record)
        for record in tasks:
            self.add(record)

    # --- what workers call -------------------------------------------------------------

    def add(self, record: TaskRecord, *, first: bool = False) -> None:
        """A task to submit; ``first``: the next canary of its model (its row again)."""
        model, used = self._fields_of(record)
        self._pending_by_model[model.name] += 1
        canary = self.mode != CanaryMode.OFF and model.name not in self._passed
        if canary and first_frame(model) in used:  # a canary sends a local picture
            candidates = self._candidates.setdefault(model.name, deque())
            (candidates.appendleft if first else candidates.append)(record.task_key)
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
            probing = any(g.probe for g in self._gates.values() if not g.open and not g.held)
            if not probing and not self._more_coming():
                return None  # no gate will open, no link will come
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
            elif event.what in SETBACKS:
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
                others = self._pending_by_model[closed[0].model.name] - 1
                announce_probe(record, closed, others, self.mode)
            return record
        return None

    def _may_probe(self, gate: Gate, record: TaskRecord) -> bool:
        if gate.probe is not None:
            return False
        if gate.field_name is not None:
            return True
        candidates = self._candidates.get(gate.model.name)
        return not candidates or candidates[0] == record.task_key

    def _gates_of(self, record: TaskRecord) -> list[Gate]:
        if self.mode == CanaryMode.OFF:
            return []
        model, used = self._fields_of(record)
        gates = []
        if model.name not in self._passed:
            gates.append(self._gate(model, None))
        for name in used:  # the first frame's form is the canary's to prove
            if name != first_frame(model) and not self.wire.settled(model, name):
                gates.append(self._gate(model, name))
        return gates

    def _gate(self, model: Model, name: str | None) -> Gate:
        key = f"{model.name}|{name or ''}"
        if key not in self._gates:
            self._gates[key] = Gate(model, name)
        return self._gates[key]

    def _fields_of(self, record: TaskRecord) -> tuple[Model, tuple[str, ...]]:
        known = self._used.get(record.task_key)
        if known is None:
            request = request_from_json(record.request_json)
            known = (request.model, tuple(fields_with_forms(request)))
            self._used[record.task_key] = known
        return known

    def _covers(self, gate: Gate, name: str | None) -> bool:
        """Whether a gate answers for a field: its own, or the first frame (the canary)."""
        if gate.field_name is not None:
            return gate.field_name == name
        return name is not None and name == first_frame(gate.model)

    def _open(self, gate: Gate) -> None:
        gate.open = True
        self._release(gate)

    def _pass(self, gate: Gate, key: str) -> None:
        self._passed.add(gate.model.name)
        record_pass(self.state, gate, key, self.mode)
        self._open(gate)

    def _again(self, gate: Gate) -> None:
        """The probe settled nothing (nothing was made): the next task probes."""
        self._drop_probe(gate)
        self._release(gate)

    def _setback(self, gate: Gate, key: str, what: str, reason: str | None) -> None:
        """The canary may have been billed and did not pass: one more canary (the same
        row in the next picture form when its picture is named), then a hold."""
        said = f"the canary {key} {what}" + (f": {reason}" if reason else "")
        picture = first_frame(gate.model)
        if not gate.second_chance:
            self._hold(gate, said)
            return
        gate.second_chance = False
        form = None
        if picture and picture in gate.probe_used and reason and names_the_picture(reason):
            form = self.wire.picture_failed(gate.model, picture)
        self._drop_probe(gate)
        announce_setback(gate, said, form)
        if form is not None:  # the same row again, first in line, in the next form
            self.state.requeue([key], f"its first attempt failed for the wire form: {reason}")
            self.add(self.state.get(key), first=True)
        self._release(gate)

    def _hold(self, gate: Gate, why: str) -> None:
        gate.held = why
        self._drop_probe(gate)
        gate.held_count += len(gate.waiting)
        gate.waiting.clear()
        announce_hold(gate, why)

    def _drop_probe(self, gate: Gate) -> None:
        if gate.probe is not None:
            probing = self._probing.get(gate.probe, [])
            if gate in probing:
                probing.remove(gate)
            candidates = self._candidates.get(gate.model.name)
            if gate.field_name is None and candidates and candidates[0] == gate.probe:
                candidates.popleft()
        gate.probe = None

    def _release(self, gate: Gate) -> None:
        for record in gate.waiting:
            heapq.heappush(self._ready, (record.position, next(self._order), record))
        gate.waiting.clear()

    def _notify(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()
