"""Before ``rerun`` pays again for a task that has a task id, ask the API what became of it.

A task we call failed, stalled or expired may have finished since we last looked (a poll
outage, a deadline, a lagging Task Result). So each chosen task with an id is asked
about once, within the poll rate:

- the API says it failed, or does not know it: resubmitted (nothing else will come);
- it succeeded: its video is fetched instead, nothing paid again;
- it is still queued or processing: left alone and reported (``resume`` polls it);
- no usable answer (network, 5xx): not resubmitted this time, since its fate is unknown.

Only ``failed`` and ``stalled`` tasks are asked about: those are where our view of the
API's outcome can be wrong. A ``succeeded`` or ``expired`` task is known to have
succeeded, so rerunning it is a deliberate choice to pay for a new take; tasks without
a task id (``unknown``, refused at submit) cannot be asked about (``unknown`` carries
its own "may pay twice" warning).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from runner.api.answers import SUCCEED, TaskResult, ended_without_video
from runner.api.client import NovitaClient
from runner.api.links import link_expiry
from runner.core.errors import KlingBatchError, TaskNotFound
from runner.core.records import TaskRecord, TaskStatus
from runner.engine.rate_limits import EndpointLimiter
from runner.ledger.transitions import RunState

ASKED = frozenset({TaskStatus.FAILED, TaskStatus.STALLED, TaskStatus.LOST})


@dataclass
class Recheck:
    resubmit: list[TaskRecord] = field(default_factory=list)
    finished: list[TaskRecord] = field(default_factory=list)  # succeeded after all: fetched
    running: list[TaskRecord] = field(default_factory=list)  # still at work: left alone
    unanswered: list[tuple[TaskRecord, str]] = field(default_factory=list)


async def recheck(
    state: RunState, client: NovitaClient, chosen: Sequence[TaskRecord], limiter: EndpointLimiter
) -> Recheck:
    """Sort ``chosen`` by what the API says now; a task found succeeded is recorded so
    (the run that follows downloads it). An error that stops a run (a refused key)
    is raised."""
    outcome = Recheck()
    for record in chosen:
        if not record.task_id or record.status not in ASKED:
            outcome.resubmit.append(record)
            continue
        await limiter.acquire()
        try:
            result = await client.task_result(record.task_id)
        except TaskNotFound:
            outcome.resubmit.append(record)
            continue
        except KlingBatchError as exc:
            if exc.stops_run:
                raise
            outcome.unanswered.append((record, str(exc)))
            continue
        _sort(state, record, result, outcome)
    return outcome


def _sort(state: RunState, record: TaskRecord, result: TaskResult, outcome: Recheck) -> None:
    if result.status == SUCCEED:
        link = link_expiry(result.video_url, result.video_url_ttl_s, time.time())
        state.mark_succeeded(record.task_key, result.video_url, link.at, result.generation_s)
        outcome.finished.append(record)
    elif ended_without_video(result.status):
        outcome.resubmit.append(record)
    else:
        outcome.running.append(record)
