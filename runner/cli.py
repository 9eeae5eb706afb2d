"""The command line: ``kling-batch validate | run | resume | rerun | report | sim``.

Exit codes (also in the README):
    0   every task succeeded
    1   the run finished, but some tasks failed, are unknown, expired or still pending
    2   usage or manifest error, or the user declined: nothing was submitted
    3   the API stopped the run (bad key, no balance, nothing answers): state saved,
        ``resume`` continues
    4   nothing failed, but some tasks are stalled (still running at the API at their
        deadline): ``resume`` polls them again; nothing to rerun
    130 interrupted (Ctrl-C, SIGTERM): state saved, ``resume`` continues
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from runner import manifest as manifests
from runner.account import AccountCheck, Balance, check_account, record_balance, tasks_covered
from runner.client import DEFAULT_BASE_URL, NovitaClient
from runner.crash import EXIT_INTERNAL, keep_traceback, machine_problem
from runner.engine import EngineConfig, RunOutcome, run_engine
from runner.errors import FolderChanged, Interrupted, KlingBatchError, ManifestError, RunFolderError
from runner.folder import RunFolder, require_ledger
from runner.limits import EndpointLimiter, Rate
from runner.lock import lock_holder
from runner.logs import setup_logging
from runner.plan import Plan, PlannedTask, plan
from runner.poll import PollPolicy
from runner.progress import LineProgress, LiveProgress, ProgressSink, progress_line
from runner.recheck import Recheck, recheck
from runner.records import TaskRecord, TaskStatus
from runner.rehearsal import SIMULATOR_API, embedded_api
from runner.report import write_reports
from runner.simulator import SimConfig, serve_forever
from runner.state import STATE_FILE, RunState
from runner.status import RunSummary, human_duration, summarize
from runner.stopping import StopSwitch, stop_on_signals

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_STOPPED, EXIT_STALLED = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except RunFolderError as exc:  # raised before anything was sent
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\ninterrupted: state is saved; `kling-batch resume DIR` continues", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the last line of defence: no traceback reaches a user
        return _unexpected(exc, args)


def _unexpected(exc: BaseException, args: argparse.Namespace) -> int:
    folder = getattr(args, "run_dir", None) or getattr(args, "out", None)
    problem = machine_problem(exc)
    if problem is not None:
        print(f"stopped: {problem}", file=sys.stderr)
        if folder is not None:
            _print_resume_hint(Path(folder), "once that is mended")
        return EXIT_STOPPED
    kept = keep_traceback(exc)
    print(
        f"internal error: {type(exc).__name__}: {exc}\n"
        f"  the traceback is in {kept}; the ledger keeps what was paid for, so resume is "
        "safe once this is mended",
        file=sys.stderr,
    )
    return EXIT_INTERNAL


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kling-batch",
        description="Batches of Kling V2.6 Pro image-to-video on Novita AI: "
        "validate, run, resume, report.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser(
        "validate", help="check a manifest: problems, task count, cost (no network)"
    )
    validate.add_argument("manifest", type=Path)
    _add_manifest_options(validate)
    validate.set_defaults(handler=cmd_validate)

    run = commands.add_parser("run", help="submit, poll, download and report; run again to resume")
    run.add_argument("manifest", type=Path)
    _add_manifest_options(run)
    run.add_argument("--out", type=Path, help="run folder (default: outputs/<manifest name>)")
    run.add_argument(
        "--simulate",
        action="store_true",
        help="rehearse against an embedded simulator (no key, no cost)",
    )
    _add_engine_options(run)
    run.set_defaults(handler=cmd_run)

    resume = commands.add_parser(
        "resume", help="finish a run folder's batch (after a crash, Ctrl-C or a stop)"
    )
    resume.add_argument("run_dir", type=Path)
    _add_engine_options(resume)
    resume.set_defaults(handler=cmd_resume)

    rerun = commands.add_parser(
        "rerun", help="submit chosen finished tasks again, as new attempts (this costs money)"
    )
    rerun.add_argument("run_dir", type=Path)
    rerun.add_argument(
        "--failed",
        action="store_true",
        help="tasks that failed (each one with a task id is asked about first)",
    )
    rerun.add_argument(
        "--stalled",
        action="store_true",
        help="tasks past their deadline: they exist, are billed and may still finish "
        "(asked about first; one still running is left alone)",
    )
    rerun.add_argument(
        "--unknown",
        action="store_true",
        help="tasks whose submit got no answer (they may exist and be billed already)",
    )
    rerun.add_argument("--expired", action="store_true", help="tasks whose video was lost")
    rerun.add_argument("--keys", default="", metavar="A,B", help="these task keys, any status")
    _add_engine_options(rerun)
    rerun.set_defaults(handler=cmd_rerun)

    status = commands.add_parser(
        "status", help="counts, spend, what is in flight and what comes next (no network)"
    )
    status.add_argument("run_dir", type=Path)
    status.add_argument("--json", action="store_true", help="the same, as JSON for scripts")
    status.set_defaults(handler=cmd_status)

    report = commands.add_parser(
        "report", help="rebuild report.csv and report.html from a run folder"
    )
    report.add_argument("run_dir", type=Path)
    report.add_argument(
        "--format",
        action="append",
        choices=["jsonl"],
        default=[],
        help="also write report.<format> (JSON Lines: one task per line)",
    )
    report.set_defaults(handler=cmd_report)

    sim = commands.add_parser("sim", help="start the local API simulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8765)
    sim.add_argument(
        "--media-port", type=int, default=0, help="video host port (default: any free)"
    )
    sim.add_argument("--api-key", default=SimConfig.api_key)
    sim.add_argument("--queue-s", type=float, default=SimConfig.queue_s)
    sim.add_argument("--generation-s", type=float, default=SimConfig.generation_s)
    sim.add_argument("--url-ttl-s", type=float, default=SimConfig.url_ttl_s)
    sim.add_argument("--fail-rate", type=float, default=0.0)
    sim.add_argument("--stall-rate", type=float, default=0.0)
    sim.add_argument("--error-500-rate", type=float, default=0.0)
    sim.add_argument("--error-503-rate", type=float, default=0.0)
    sim.add_argument("--drop-after-create-rate", type=float, default=0.0)
    sim.add_argument(
        "--submit-limit", type=_rate, help="server-side limit, e.g. 20/min (429 beyond)"
    )
    sim.add_argument(
        "--balance-usd", type=float, help="the account's balance; each task's price is deducted"
    )
    sim.add_argument(
        "--poll-outage",
        type=_seconds_window,
        metavar="START:END",
        help="Task Result answers 503 from START to END seconds after the start",
    )
    sim.add_argument(
        "--result-lag-polls",
        type=int,
        default=0,
        help="each task's first N polls answer 404 TASK_NOT_FOUND (a lagging Task Result)",
    )
    sim.add_argument("--seed", type=int, default=0)
    sim.set_defaults(handler=cmd_sim)
    return parser


def _seconds_window(text: str) -> tuple[float, float]:
    start, _, end = text.partition(":")
    try:
        return float(start), float(end)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a window looks like 2:30 (seconds), not {text!r}"
        ) from None


def _rate(text: str) -> Rate:
    try:
        return Rate.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _usd(text: str) -> float:
    """A budget: zero or more dollars, or ``inf`` to lift it."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(
            f"a budget is dollars, 0 or more (e.g. 25 or 12.50; inf lifts it), not {text!r}"
        )
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"seconds, more than 0 (e.g. 1800), not {text!r}")
    return value


def _add_engine_options(parser: argparse.ArgumentParser) -> None:
    """Options of every command that spends. They default to None so that ``resume``
    and ``rerun`` can tell "not given" (use what the run folder saved) from a value."""
    parser.add_argument("--yes", action="store_true", help="spend without asking")
    parser.add_argument(
        "--budget",
        type=_usd,
        metavar="USD",
        help="stop submitting before the run folder's estimated spend would pass this",
    )
    parser.add_argument("--submit-rate", type=_rate, help=f"default {RUN_DEFAULTS['submit_rate']}")
    parser.add_argument("--poll-rate", type=_rate, help=f"default {RUN_DEFAULTS['poll_rate']}")
    parser.add_argument(
        "--no-download",
        action="store_const",
        const=True,
        help="keep video URLs, don't download",
    )
    parser.add_argument(
        "--task-timeout",
        type=_seconds,
        metavar="SECONDS",
        help=f"per-task deadline (default {RUN_DEFAULTS['task_timeout']:g})",
    )
    parser.add_argument(
        "--first-poll-s",
        type=_seconds,
        metavar="SECONDS",
        help="first look at a new task; later polls follow its eta "
        f"(default {RUN_DEFAULTS['first_poll_s']:g})",
    )
    parser.add_argument(
        "--progress-every",
        type=_seconds,
        metavar="SECONDS",
        help="without a terminal, a progress line this often "
        f"(default {RUN_DEFAULTS['progress_every']:g}; a terminal gets a live panel)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")


def _add_manifest_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a default for every row (beats the manifest's own defaults; rows still win)",
    )
    parser.add_argument(
        "--price-per-second",
        action="append",
        default=[],
        metavar="TIER=USD",
        help="override the estimate's price (tiers: silent, sound, sound_voices)",
    )


# --- validate ----------------------------------------------------------------------


def _load_plan(args: argparse.Namespace) -> Plan | None:
    try:
        overrides = manifests.parse_overrides(args.set)
        prices = manifests.parse_overrides(args.price_per_second, "--price-per-second")
        loaded = manifests.load(args.manifest, overrides)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    except ManifestError as exc:
        _print_problems(exc.problems)
        return None
    result = plan(loaded, prices)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not result.ok:
        _print_problems(result.problems)
        return None
    return result


def _print_problems(problems: Sequence[object]) -> None:
    print(f"{len(problems)} problem(s); nothing was submitted:", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)


def _print_estimate(result: Plan, title: str) -> None:
    print(title)
    for duration, tier, count, cost in result.cost_breakdown():
        label = {"silent": "no sound", "sound": "with sound", "sound_voices": "sound + voices"}[
            tier
        ]
        print(f"  {count:>6} x {duration:>2}s {label:<15} ~ ${cost:,.2f}")
    print(f"  total (estimate) ~ ${result.total_cost:,.2f}")
    if result.prices:
        shown = ", ".join(f"{tier} ${usd:g}/s" for tier, usd in result.prices.items())
        print(f"  prices: {shown}")
    if result.sound_by_default:
        print(
            f"  note: {result.sound_by_default} task(s) say nothing about sound, so they get it "
            "(the API's default), at twice the price; set sound: false to save"
        )


def cmd_validate(args: argparse.Namespace) -> int:
    result = _load_plan(args)
    if result is None:
        return EXIT_USAGE
    rows = len({t.row_id for t in result.tasks})
    _print_estimate(result, f"{args.manifest}: OK, {len(result.tasks)} task(s) from {rows} row(s)")
    if result.url_images:
        print(f"  {result.url_images} task(s) use image URLs: the API fetches and checks those")
    return EXIT_OK


# --- run, resume, rerun ------------------------------------------------------------

# What a run folder remembers of its options, so that `resume` runs it the same way.
RUN_DEFAULTS: dict[str, object] = {
    "submit_rate": "20/min",
    "poll_rate": "5/s",
    "task_timeout": 1800.0,
    "first_poll_s": 5.0,
    "no_download": False,
    "budget": None,
    "progress_every": 30.0,
}


def cmd_run(args: argparse.Namespace) -> int:
    result = _load_plan(args)
    if result is None:
        return EXIT_USAGE
    run_dir = args.out or Path("outputs") / args.manifest.stem
    api = SIMULATOR_API if args.simulate else os.environ.get("NOVITA_BASE_URL", DEFAULT_BASE_URL)
    api_key = _api_key(api)
    if api_key is None:
        return EXIT_USAGE
    with RunFolder.for_run(run_dir) as folder:
        folder.check_api(api)
        synced = folder.sync(result.tasks)
        pending = len(folder.state.tasks([TaskStatus.PENDING]))
        print(f"{run_dir}: {len(result.tasks)} task(s): {synced.added} new, {pending} to submit")
        if synced.retired:
            print(
                f"  {synced.retired} pending task(s) retired: their rows (or repeats) are no "
                "longer in the manifest, so they are not sent"
            )
        return _spend(args, folder, api, api_key, manifest=str(args.manifest.resolve()))


def cmd_resume(args: argparse.Namespace) -> int:
    with RunFolder.existing(args.run_dir) as folder:
        connection = _folder_api(folder)
        if connection is None:
            return EXIT_USAGE
        return _spend(args, folder, *connection)


def cmd_rerun(args: argparse.Namespace) -> int:
    statuses = [
        status
        for status, chosen in (
            (TaskStatus.FAILED, args.failed),
            (TaskStatus.STALLED, args.stalled),
            (TaskStatus.UNKNOWN, args.unknown),
            (TaskStatus.EXPIRED, args.expired),
        )
        if chosen
    ]
    keys = [k.strip() for k in args.keys.split(",") if k.strip()]
    if not statuses and not keys:
        print(
            "error: say what to rerun: --failed, --stalled, --unknown, --expired or --keys",
            file=sys.stderr,
        )
        return EXIT_USAGE
    with RunFolder.existing(args.run_dir) as folder:
        connection = _folder_api(folder)
        if connection is None:
            return EXIT_USAGE
        chosen = folder.choose_reruns(statuses, keys)
        if not chosen:
            print(f"{args.run_dir}: no task to rerun")
            return EXIT_OK
        for status in (TaskStatus.UNKNOWN, TaskStatus.STALLED):
            if any(r.status == status for r in chosen):
                print(f"note: {MAY_PAY_TWICE[status]}; rerunning it can pay twice for that row")
        return _spend(args, folder, *connection, rerun=chosen)


MAY_PAY_TWICE = {
    TaskStatus.UNKNOWN: "an 'unknown' task may already exist at the API and be billed",
    TaskStatus.STALLED: "a 'stalled' task exists at the API, is billed, and may still finish",
}


def _folder_api(folder: RunFolder) -> tuple[str, str] | None:
    """The API a run folder's tasks belong to, and a key for it; None (after saying why)
    if there is no key. NOVITA_BASE_URL pointing elsewhere is refused by the folder."""
    api = folder.state.meta().get("api") or os.environ.get("NOVITA_BASE_URL", DEFAULT_BASE_URL)
    folder.check_api(api if api == SIMULATOR_API else os.environ.get("NOVITA_BASE_URL", api))
    api_key = _api_key(api)
    return None if api_key is None else (api, api_key)


def _saved_options(state: RunState) -> dict[str, object]:
    return json.loads(state.meta().get("options", "{}"))


def _api_key(api: str) -> str | None:
    if api == SIMULATOR_API:
        return secrets.token_urlsafe(16)
    key = os.environ.get("NOVITA_API_KEY", "")
    if not key:
        print("error: set NOVITA_API_KEY (or use run --simulate to rehearse)", file=sys.stderr)
        return None
    return key


def _options(args: argparse.Namespace, saved: dict[str, object]) -> dict[str, object]:
    """Given on the command line beats saved in the run folder beats the default."""
    options = {**RUN_DEFAULTS, **saved}
    for name in RUN_DEFAULTS:
        value = getattr(args, name, None)
        if value is not None:
            options[name] = str(value) if isinstance(value, Rate) else value
    return options


def _engine_config(options: dict[str, object]) -> EngineConfig:
    return EngineConfig(
        submit_rate=Rate.parse(str(options["submit_rate"])),
        poll_rate=Rate.parse(str(options["poll_rate"])),
        download=not options["no_download"],
        budget_usd=None if options["budget"] is None else float(options["budget"]),
        progress_every_s=float(options["progress_every"]),
        poll_policy=PollPolicy(
            task_timeout_s=float(options["task_timeout"]),
            first_delay_s=float(options["first_poll_s"]),
        ),
    )


@contextlib.contextmanager
def _api_base_url(state: RunState, api: str, api_key: str) -> Iterator[str]:
    """The base URL to talk to: the folder's API, or an embedded simulator's."""
    if api != SIMULATOR_API:
        yield api
        return
    with embedded_api(state, api_key) as base_url:
        yield base_url


def _spend(
    args: argparse.Namespace,
    folder: RunFolder,
    api: str,
    api_key: str,
    *,
    manifest: str | None = None,
    rerun: Sequence[TaskRecord] | None = None,
) -> int:
    """The one flow of ``run``, ``resume`` and ``rerun``: check the account, ask the API
    about the tasks a rerun would pay for again, show the estimate and ask, then run."""
    state = folder.state
    options = _options(args, saved=_saved_options(state))
    setup_logging(folder.run_dir, verbose=args.verbose, secrets=[api_key])
    with _api_base_url(state, api, api_key) as base_url:
        try:
            account, rechecked = asyncio.run(
                _before_spending(state, base_url, api_key, options, rerun)
            )
        except KlingBatchError as exc:
            print(f"stopped before any submit: {exc}", file=sys.stderr)
            _print_resume_hint(folder.run_dir, exc.hint or "nothing was sent")
            return EXIT_STOPPED
        if account.warning:
            print(f"warning: {account.warning}; going on without it", file=sys.stderr)
        if account.balance is not None:
            record_balance(state.meta(), state.set_meta, account.balance)
        to_resubmit = _say_recheck(rechecked) if rechecked is not None else []
        if not _confirm_spend(args, state, options, api, to_resubmit, account.balance):
            return EXIT_USAGE
        meta = {"api": api, "options": json.dumps(options)}
        state.set_meta(**meta, **({"manifest": manifest} if manifest else {}))
        if to_resubmit:
            state.requeue([r.task_key for r in to_resubmit], "rerun requested")
            print(f"{len(to_resubmit)} task(s) queued again as new attempts")
        return _execute(folder, base_url, api_key, options, args.verbose)


async def _before_spending(
    state: RunState,
    base_url: str,
    api_key: str,
    options: dict[str, object],
    rerun: Sequence[TaskRecord] | None,
) -> tuple[AccountCheck, Recheck | None]:
    async with NovitaClient(base_url, api_key) as client:
        account = await check_account(client)
        if rerun is None:
            return account, None
        limiter = EndpointLimiter(Rate.parse(str(options["poll_rate"])), "poll")
        return account, await recheck(state, client, rerun, limiter)


def _say_recheck(rechecked: Recheck) -> list[TaskRecord]:
    """Print what the API said of the tasks a rerun would pay for again; return the ones
    to resubmit."""
    if rechecked.finished:
        print(
            f"{len(rechecked.finished)} task(s) succeeded at the API after all: their videos "
            "are fetched, nothing is paid again"
        )
    if rechecked.running:
        keys = ", ".join(r.task_key for r in rechecked.running[:10])
        print(
            f"{len(rechecked.running)} task(s) are still running at the API, so not "
            f"resubmitted: {keys} (this run polls them)"
        )
    for record, error in rechecked.unanswered:
        print(
            f"{record.task_key}: not resubmitted: the API could not be asked about task "
            f"{record.task_id} ({error}); try again later",
            file=sys.stderr,
        )
    return rechecked.resubmit


def _confirm_spend(
    args: argparse.Namespace,
    state: RunState,
    options: dict[str, object],
    api: str,
    extra: Sequence[TaskRecord] = (),
    balance: Balance | None = None,
) -> bool:
    """Show what is about to be spent (pending tasks plus ``extra``) and ask."""
    to_send = [PlannedTask.from_record(r) for r in [*state.tasks([TaskStatus.PENDING]), *extra]]
    if not to_send:
        return True
    simulated = api == SIMULATOR_API
    estimate = Plan(tasks=to_send)
    _print_estimate(estimate, "would cost (simulated: free):" if simulated else "to spend now:")
    budget = options["budget"]
    if budget is not None:
        spent = state.committed_spend()
        print(
            f"  budget ${float(budget):,.2f}: ${spent:,.2f} already spent in this folder; "
            "submitting stops before the estimate would pass it"
        )
    short = balance is not None and estimate.total_cost > balance.usd
    if balance is not None:
        print(f"  balance ${balance.usd:,.2f} (the account, now)")
    if short:
        covered = tasks_covered([t.est_cost_usd for t in to_send], balance.usd)
        print(
            f"  the balance covers about {covered} of these {len(to_send)} task(s); the API "
            "stops the run when it runs out (resume continues after a top-up)"
        )
    if args.yes:
        return True
    if not sys.stdin.isatty():
        print("refusing to spend without --yes when there is no terminal to ask", file=sys.stderr)
        return False
    question = "submit anyway? [y/N] " if short else "submit these tasks? [y/N] "
    try:
        answer = input(question)
    except (EOFError, KeyboardInterrupt):  # Ctrl-D or Ctrl-C at the question: a "no"
        answer = ""
        print()
    if answer.strip().lower() in ("y", "yes"):
        return True
    print("declined: nothing was sent", file=sys.stderr)
    return False


def _execute(
    folder: RunFolder, base_url: str, api_key: str, options: dict[str, object], verbose: bool
) -> int:
    state, run_dir = folder.state, folder.run_dir
    config = _engine_config(options)
    progress = (
        LiveProgress(console_level=logging.DEBUG if verbose else logging.WARNING)
        if sys.stderr.isatty()
        else LineProgress(config.progress_every_s)
    )
    try:
        outcome, balance = asyncio.run(
            _run(state, config, run_dir, base_url, api_key, progress, folder.guard)
        )
    except asyncio.CancelledError:  # a second Ctrl-C: cut short, ledger still consistent
        write_reports(state, run_dir)
        _print_resume_hint(run_dir, "stopped at once")
        return EXIT_INTERRUPTED
    if isinstance(outcome.stop_error, FolderChanged):
        return _folder_changed(state, run_dir, outcome)
    if balance is not None:
        record_balance(state.meta(), state.set_meta, balance)
    missing = state.missing_videos() if config.download else 0
    return _finish(state, run_dir, outcome, missing)


async def _run(
    state: RunState,
    config: EngineConfig,
    run_dir: Path,
    base_url: str,
    api_key: str,
    progress: ProgressSink,
    guard: Callable[[], str | None],
) -> tuple[RunOutcome, Balance | None]:
    """The engine under the signal handlers; then the balance, for the measured spend."""
    stop = StopSwitch()

    def on_first_signal(name: str) -> None:
        print(
            f"\n{name}: no new submits; waiting for requests in flight "
            "(press Ctrl-C again to quit at once; nothing is lost either way)",
            file=sys.stderr,
            flush=True,
        )

    with stop_on_signals(stop, on_first_signal):
        async with NovitaClient(base_url, api_key) as client:
            outcome = await run_engine(
                state, client, run_dir, config, stop=stop, progress=progress, guard=guard
            )
            try:
                balance = (await check_account(client, retry_delays_s=())).balance
            except KlingBatchError:
                balance = None
            return outcome, balance


def _folder_changed(state: RunState, run_dir: Path, outcome: RunOutcome) -> int:
    """The ledger was deleted or replaced under the run: save this process's copy (all
    it knows of what was paid for), put it back if the place is free, and say so."""
    print(f"stopped: {outcome.stopped_by}", file=sys.stderr)
    if state.file_problem() is None:  # the lock file went, the ledger is fine
        _print_resume_hint(run_dir, "stopped so that no second run can start beside it")
        return EXIT_STOPPED
    copy = state.rescue()
    state.close()
    if not state.path.exists():
        os.replace(copy, state.path)
        print(f"  the ledger was restored from this process to {state.path}", file=sys.stderr)
        _print_resume_hint(run_dir, "nothing is lost")
    else:
        print(
            f"  this process's ledger is saved as {copy}; {state.path} is another file now.\n"
            f"  move that one aside and {copy.name} to {STATE_FILE}, then resume",
            file=sys.stderr,
        )
    return EXIT_STOPPED


def _print_resume_hint(run_dir: Path, what: str) -> None:
    print(
        f"{what}: state is saved in {run_dir}\n"
        f"  to continue: kling-batch resume {run_dir} (or the same run command again)",
        file=sys.stderr,
    )


def _finish(state: RunState, run_dir: Path, outcome: RunOutcome, missing_videos: int) -> int:
    files = write_reports(state, run_dir)
    print(f"done in {outcome.elapsed_s:.1f}s: {progress_line(outcome.counts, 0)}")
    print(
        f"  {outcome.created} task(s) created this run, {outcome.polls} polls, "
        f"{outcome.downloaded} video(s) downloaded; estimated spend ${outcome.spent_usd:,.2f}"
    )
    print(f"  report: {files.csv}\n          {files.html}")
    if files.failed_yaml:
        print(f"  failed rows as a manifest: {files.failed_yaml}")
    if isinstance(outcome.stop_error, Interrupted):
        _print_resume_hint(run_dir, f"interrupted ({outcome.stop_error})")
        return EXIT_INTERRUPTED
    if outcome.stopped_by:
        hint = getattr(outcome.stop_error, "hint", "") or "fix the cause"
        print(f"stopped: {outcome.stopped_by}", file=sys.stderr)
        _print_resume_hint(run_dir, hint)
        return EXIT_STOPPED
    if outcome.budget_reached:
        pending = outcome.counts.get(TaskStatus.PENDING, 0)
        print(
            f"  budget reached: {pending} task(s) left pending; "
            f"raise it with: kling-batch resume {run_dir} --budget USD"
        )
    stalled = outcome.counts.get(TaskStatus.STALLED, 0)
    if stalled:
        print(
            f"  {stalled} task(s) stalled: still running at the API (or unanswered) at their "
            f"deadline; they are billed either way and may still finish.\n"
            f"  kling-batch resume {run_dir} polls them again and fetches their videos"
        )
    if missing_videos:
        print(f"  {missing_videos} video(s) not downloaded yet: run again to fetch them")
        return EXIT_SOME_FAILED
    return exit_code_for(outcome.counts)


def exit_code_for(counts: dict[str, int]) -> int:
    """0 when every task the manifest asks for succeeded; 4 when the only thing left is
    stalled tasks (``resume`` later, nothing to rerun); 1 for anything else."""
    settled = {TaskStatus.SUCCEEDED, TaskStatus.RETIRED, TaskStatus.STALLED}
    if any(n for status, n in counts.items() if status not in settled):
        return EXIT_SOME_FAILED
    if counts.get(TaskStatus.STALLED):
        return EXIT_STALLED
    return EXIT_OK if counts.get(TaskStatus.SUCCEEDED) else EXIT_SOME_FAILED


# --- report, sim --------------------------------------------------------------------


def _read_folder(run_dir: Path) -> RunState:
    """A run folder for reading: no lock is taken, so this works while a run holds it."""
    require_ledger(run_dir)
    return RunState.open(run_dir, read_only=True)


def cmd_report(args: argparse.Namespace) -> int:
    state = _read_folder(args.run_dir)
    try:
        files = write_reports(state, args.run_dir, args.format)
        print(progress_line(state.counts(), 0))
        print(f"report: {files.csv}\n        {files.html}")
    finally:
        state.close()
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    holder = lock_holder(args.run_dir)
    state = _read_folder(args.run_dir)
    try:
        summary = summarize(
            state, str(args.run_dir), live_run=holder.describe() if holder else None
        )
    finally:
        state.close()
    if args.json:
        print(json.dumps(summary.as_json(), indent=2))
        return EXIT_OK
    counts = ", ".join(f"{n} {s}" for s, n in summary.counts.items()) or "no tasks"
    print(f"{args.run_dir}: {summary.done}/{summary.total} done ({counts})")
    if summary.live_run:
        print(f"  live: a run holds this folder: {summary.live_run}")
    print(
        f"  spent ~ ${summary.spent_usd:,.2f} of an estimated ${summary.est_total_usd:,.2f} "
        "for every task once"
    )
    _print_balance(summary)
    if summary.generation_p50_s is not None:
        print(
            f"  generation time p50 {summary.generation_p50_s:.1f}s, "
            f"p95 {summary.generation_p95_s:.1f}s"
        )
    if summary.in_flight:
        oldest = summary.oldest
        print(
            f"  {len(summary.in_flight)} in flight; oldest {oldest.task_key} "
            f"({oldest.status}, {human_duration(oldest.age_s)} since submit)"
        )
        for task in summary.in_flight[:10]:
            age = human_duration(task.age_s)
            print(f"    {task.task_key:<30} {task.status:<11} {age:>8}  {task.task_id}")
        if len(summary.in_flight) > 10:
            print(f"    ... and {len(summary.in_flight) - 10} more")
    for task in summary.stalled[:10]:
        answered = summary.last_answers.get(task.task_key)
        last = _clock(answered) if answered else "none since the submit"
        print(f"  stalled {task.task_key:<30} {task.task_id}  last answer: {last}")
    if summary.videos_missing:
        print(f"  {summary.videos_missing} video(s) not downloaded yet")
    print("next:")
    for step in summary.next_steps:
        print(f"  {step}")
    return EXIT_OK


def _print_balance(summary: RunSummary) -> None:
    if summary.balance_latest_usd is None or summary.balance_latest_at is None:
        return
    line = f"  balance ${summary.balance_latest_usd:,.2f} at {_clock(summary.balance_latest_at)}"
    measured = summary.measured_spend_usd
    if measured and summary.balance_first_usd is not None:
        line += (
            f" (${summary.balance_first_usd:,.2f} at the first run): the account went down "
            f"${measured:,.2f}; an upper bound if anything else used the account meanwhile"
        )
    print(line)


def _clock(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def cmd_sim(args: argparse.Namespace) -> int:
    config = SimConfig(
        api_key=args.api_key,
        queue_s=args.queue_s,
        generation_s=args.generation_s,
        url_ttl_s=args.url_ttl_s,
        fail_rate=args.fail_rate,
        stall_rate=args.stall_rate,
        error_500_rate=args.error_500_rate,
        error_503_rate=args.error_503_rate,
        drop_after_create_rate=args.drop_after_create_rate,
        submit_limit=int(args.submit_limit.count) if args.submit_limit else None,
        limit_window_s=args.submit_limit.period_s if args.submit_limit else 60.0,
        balance_usd=args.balance_usd,
        poll_outage_s=args.poll_outage,
        result_lag_polls=args.result_lag_polls,
        seed=args.seed,
    )
    try:
        asyncio.run(serve_forever(config, args.host, args.port, args.media_port))
    except KeyboardInterrupt:
        print("simulator stopped")
    except OSError as exc:  # the port is taken, or not ours to bind
        print(
            f"error: the simulator cannot listen on {args.host}:{args.port} "
            f"(or media port {args.media_port}): {exc.strerror or exc}\n"
            "  choose another with --port (and --media-port), or stop what uses it",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return EXIT_OK
