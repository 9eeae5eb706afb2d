"""The one flow of ``run``, ``resume`` and ``rerun``, as a library the CLI words.

1. connect: the folder's API (a base URL, or the embedded simulator) and a key;
2. before spending: one free request checks the key, the base URL and the balance; a
   rerun asks the API what became of each task it would pay for again;
3. the person says yes (the CLI asks; see ``runner.cli.console``);
4. commit: the options and the API are saved in the folder, rerun tasks requeued;
5. run: the engine under the signal handlers, then the balance again.

Every refusal is a typed error (:mod:`runner.core.errors`); nothing here prints.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runner.api.account import AccountCheck, Balance, check_account
from runner.api.client import NovitaClient
from runner.api.credentials import BASE_URL_ENV, api_key_of, base_url_of
from runner.api.learned import Learned
from runner.core.errors import KlingBatchError
from runner.core.pool import warm_up
from runner.core.records import TaskRecord, TaskStatus
from runner.engine.canary import CanaryMode
from runner.engine.poll_timing import PollPolicy
from runner.engine.progress import ProgressSink
from runner.engine.rate_limits import EndpointLimiter
from runner.engine.recheck import Recheck, recheck
from runner.engine.stopping import StopSwitch, stop_on_signals
from runner.engine.wiring import EngineConfig, RunOutcome, run_engine
from runner.ledger.transitions import RunState
from runner.manifest.plan import Plan, PlannedTask
from runner.media.earlier import keep_earlier_takes
from runner.media.picture_pool import Converted, convert_pictures
from runner.run.folder import RunFolder
from runner.run.options import RunOptions, parse_wire
from runner.run.rehearsal import SIMULATOR_API, embedded_api
from runner.run.sheet_keeper import sheet_kept


@dataclass(frozen=True)
class Connection:
    api: str  # what the folder is bound to: a base URL, or SIMULATOR_API
    api_key: str = field(repr=False)


def connect(simulate: bool, env: Mapping[str, str] = os.environ) -> Connection:
    """For ``run``: the embedded simulator, or ``NOVITA_BASE_URL`` with its key."""
    if simulate:
        return Connection(SIMULATOR_API, secrets.token_urlsafe(16))
    return Connection(base_url_of(env), api_key_of(env))


def connect_folder(folder: RunFolder, env: Mapping[str, str] = os.environ) -> Connection:
    """For ``resume``/``rerun``: the API the folder's tasks belong to. A
    ``NOVITA_BASE_URL`` that points elsewhere is refused by the folder."""
    api = folder.state.meta().get("api") or base_url_of(env)
    if api == SIMULATOR_API:
        return connect(simulate=True)
    folder.check_api(base_url_of({BASE_URL_ENV: api, **env}))
    return Connection(api, api_key_of(env))


@contextlib.contextmanager
def base_url(state: RunState, connection: Connection) -> Iterator[str]:
    """The URL to talk to for the life of a command: the folder's API, or an embedded
    simulator's (started here, stopped on leaving)."""
    if connection.api != SIMULATOR_API:
        yield connection.api
        return
    with embedded_api(state, connection.api_key) as url:
        yield url


def learned_of(state: RunState, connection: Connection) -> Learned:
    """What is known of the folder's API: the folder's facts over the user's cache (a
    rehearsal keeps its own: the embedded simulator's readings are not the API's)."""
    return Learned.open(connection.api, state, use_cache=connection.api != SIMULATOR_API)


def engine_config(options: RunOptions) -> EngineConfig:
    """The engine as the user's options set it (the rest are tuned defaults)."""
    return EngineConfig(
        submit_rate=options.submit_rate,
        poll_rate=options.poll_rate,
        download=options.download,
        budget_usd=options.budget_usd,
        progress_every_s=options.progress_every_s,
        max_failure_streak=options.max_failure_streak,
        canary=CanaryMode(options.canary),
        wire=parse_wire(options.wire),
        poll_policy=PollPolicy(
            task_timeout_s=options.task_timeout_s, first_poll_s=options.first_poll_s
        ),
    )


def saved_options(state: RunState) -> dict[str, object]:
    saved: dict[str, object] = json.loads(state.meta().get("options", "{}"))
    return saved


@dataclass
class Preflight:
    account: AccountCheck
    rechecked: Recheck | None = None

    @property
    def to_resubmit(self) -> list[TaskRecord]:
        return self.rechecked.resubmit if self.rechecked else []


async def preflight(
    state: RunState,
    url: str,
    api_key: str,
    options: RunOptions,
    rerun: Sequence[TaskRecord] | None,
) -> Preflight:
    """The free requests before spending. Raises :class:`AuthError` or
    :class:`ApiUnreachable` (exit 3) before any submit."""
    async with NovitaClient(url, api_key) as client:
        account = await check_account(client)
        if rerun is None:
            return Preflight(account)
        limiter = EndpointLimiter(options.poll_rate, "poll")
        return Preflight(account, await recheck(state, client, rerun, limiter))


def to_send(state: RunState, extra: Sequence[TaskRecord] = ()) -> Plan:
    """Pending tasks plus ``extra`` (a rerun's), as the estimate shows them."""
    records = [*state.tasks([TaskStatus.PENDING]), *extra]
    return Plan(tasks=[PlannedTask.from_record(r) for r in records])


def make_pictures(state: RunState, run_dir: Path, to_send: Plan) -> dict[str, Converted]:
    """Every converted picture the tasks to send need, made once into ``images/`` (on
    every core), before the question: nothing is paid for a task whose picture cannot
    be made, which fails here, pending tasks only (a rerun's are failed already)."""
    made = convert_pictures(run_dir, to_send.conversions)
    if not any(m.problem for m in made.values()):
        return made
    pending = {r.task_key for r in state.tasks([TaskStatus.PENDING])}
    for task in to_send.tasks:
        problems = [made[p.name].problem for p in task.pictures if made[p.name].problem]
        if problems and task.key in pending:
            state.mark_failed(task.key, f"its picture could not be made: {problems[0]}")
    return made


def commit(
    state: RunState,
    connection: Connection,
    options: RunOptions,
    manifest: str | None,
    to_resubmit: Sequence[TaskRecord],
) -> None:
    """The person said yes: remember how the folder runs, queue a rerun's tasks."""
    meta = {"api": connection.api, "options": json.dumps(options.saved())}
    state.set_meta(**meta, **({"manifest": manifest} if manifest else {}))
    if to_resubmit:
        state.revise(to_resubmit)  # a redo's edits: the old request kept beside its attempts
        state.requeue([r.task_key for r in to_resubmit], "rerun requested")
        keep_earlier_takes(state.path.parent, to_resubmit)  # each was paid for


async def run_batch(
    folder: RunFolder,
    url: str,
    api_key: str,
    options: RunOptions,
    progress: ProgressSink,
    on_first_signal: Callable[[str], None],
    learned: Learned | None = None,
) -> tuple[RunOutcome, Balance | None]:
    """The engine under the signal handlers; then the balance, for the measured spend."""
    warm_up()  # the night's end draws its sheet on every core: the fork server starts now
    stop = StopSwitch()
    with stop_on_signals(stop, on_first_signal):
        async with NovitaClient(url, api_key) as client, sheet_kept(folder.run_dir):
            outcome = await run_engine(
                folder.state,
                client,
                folder.run_dir,
                engine_config(options),
                stop=stop,
                progress=progress,
                guard=folder.guard,
                learned=learned,
            )
            try:
                balance = (await check_account(client, retry_delays_s=())).balance
            except KlingBatchError:
                balance = None
            return outcome, balance


def rescue_ledger(state: RunState) -> tuple[Path, Path | None]:
    """The ledger was deleted or replaced under the run: save this process's copy (all
    it knows of what was paid for) and put it back if its place is free. Returns the
    copy and where it was restored to, if it was."""
    copy = state.rescue()
    state.close()
    if state.path.exists():
        return copy, None
    os.replace(copy, state.path)
    return copy, state.path
