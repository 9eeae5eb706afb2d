"""The command line: ``kling-batch validate | run | resume | rerun | status | report | sim``.

A thin adapter over the library: it parses, calls, has ``runner.cli.console`` word the
result, and maps typed errors to exit codes (``runner.cli.exits``, the README's table). The
rules live elsewhere: the run folder's in ``runner.run.folder``, the spending flow in
``runner.run.flow``, the options in ``runner.run.options``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from jobs import DEFAULT_MODEL, MODELS, model_as_json
from runner.api.account import record_balance
from runner.api.learned import LINKS, Learned
from runner.api.links import run_outlives_links
from runner.cli import console
from runner.cli import status_words as status_console
from runner.cli.arguments import RERUN_FLAGS, build_parser
from runner.cli.doctor_words import cmd_doctor
from runner.cli.exits import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_STOPPED,
    EXIT_USAGE,
    exit_code_for,
    exit_code_for_error,
)
from runner.core.causes import RERUN_BY_DEFAULT, FailureClass
from runner.core.crash import keep_traceback, machine_problem
from runner.core.errors import FolderChanged, KlingBatchError, ManifestError
from runner.core.logs import setup_logging, survive_closed_console
from runner.core.records import TaskRecord, TaskStatus
from runner.engine.progress import LineProgress, LiveProgress, ProgressSink, progress_line
from runner.ledger.transitions import RunState
from runner.manifest.files import STDIN, load
from runner.manifest.plan import Plan, plan
from runner.manifest.rows import parse_overrides
from runner.reports import notices as notify
from runner.reports.report import write_reports
from runner.reports.sheet import write_contact_sheet
from runner.reports.summary import links_to_fetch, summarize
from runner.run import flow
from runner.run.folder import RunFolder, require_ledger
from runner.run.lock import lock_holder
from runner.run.options import RunOptions, option_specs
from runner.run.rehearsal import SIMULATOR_API
from runner.simulator import run_simulator


def main(argv: Sequence[str] | None = None) -> int:
    """The command line. Called with no ``argv`` it is the process itself (the
    ``kling-batch`` script, ``python -m runner``): then a console whose reader went
    away never stops a batch, and SIGTERM and SIGHUP (a closed terminal or SSH
    session) are Ctrl-C everywhere (a "no" at the question, exit 130 elsewhere), not a
    kill that leaves the ledger's WAL behind and sends no alert."""
    if argv is None:
        survive_closed_console()
        signal.signal(signal.SIGTERM, _terminate_as_interrupt)
        signal.signal(signal.SIGHUP, _terminate_as_interrupt)  # the terminal went away
    args = build_parser().parse_args(argv)
    if getattr(args, "notify_test", False):
        return _notify_test(args)
    try:
        if hasattr(args, "notify"):  # before any folder, lock or request is made
            notify.check_urls(notify.notify_urls(args.notify))
        return COMMANDS[args.command](args)
    except KlingBatchError as exc:  # refused or stopped before anything was sent
        return _refused(exc, args)
    except KeyboardInterrupt:
        console.error("\ninterrupted: state is saved; `kling-batch resume DIR` continues")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `kling-batch models | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # the last line of defence: no traceback reaches a user
        return _unexpected(exc, args)


def _notify_test(args: argparse.Namespace) -> int:
    """``--notify-test``: one message to every URL, so a night's alert is known to
    arrive; nothing else is done."""
    urls = notify.notify_urls(args.notify)
    if not urls:
        console.error(f"error: --notify-test needs --notify URL or ${notify.NOTIFY_ENV}")
        return EXIT_USAGE
    warnings = notify.send(urls, notify.test_message())
    for warning in warnings:
        console.error(f"warning: {warning}")
    delivered = len(urls) - len(warnings)
    print(f"test message sent to {delivered} of {len(urls)}: " + ", ".join(map(notify.shown, urls)))
    return EXIT_OK if not warnings else EXIT_STOPPED


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _refused(exc: KlingBatchError, args: argparse.Namespace) -> int:
    if isinstance(exc, ManifestError):
        console.problems(exc.problems)
        return EXIT_USAGE
    code = exit_code_for_error(exc)
    if code == EXIT_USAGE:
        console.error(f"error: {exc}")
    else:
        console.error(f"stopped before any submit: {exc}")
        console.resume_hint(_run_dir(args), exc.hint or "nothing was sent")
    return code


def _unexpected(exc: BaseException, args: argparse.Namespace) -> int:
    problem = machine_problem(exc)
    if problem is not None:
        console.error(f"stopped: {problem}")
        console.resume_hint(_run_dir(args), "once that is mended")
        return EXIT_STOPPED
    console.error(
        f"internal error: {type(exc).__name__}: {exc}\n"
        f"  the traceback is in {keep_traceback(exc)}; the ledger keeps what was paid for, "
        "so resume is safe once this is mended"
    )
    return EXIT_INTERNAL


def _run_dir(args: argparse.Namespace) -> Path:
    given = getattr(args, "run_dir", None) or getattr(args, "out", None)
    manifest = getattr(args, "manifest", None)
    if given:
        return Path(given)
    if manifest is not None and str(manifest) == STDIN:
        return Path("outputs") / "stdin"
    return Path("outputs") / (manifest.stem if manifest else "DIR")


# --- commands ----------------------------------------------------------------------


def _load_plan(args: argparse.Namespace) -> Plan | None:
    try:
        overrides = parse_overrides(args.set)
        prices = parse_overrides(args.price_per_second, "--price-per-second")
    except ValueError as exc:
        console.error(f"error: {exc}")
        return None
    result = plan(load(args.manifest, overrides), prices, args.max_tasks)
    for warning in result.warnings:
        console.error(f"warning: {warning}")
    if not result.ok:
        console.problems(result.problems)
        return None
    return result


def cmd_validate(args: argparse.Namespace) -> int:
    result = _load_plan(args)
    if result is None:
        return EXIT_USAGE
    console.validated(result, args.manifest)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    result = _load_plan(args)
    if result is None:
        return EXIT_USAGE
    connection = flow.connect(args.simulate)
    run_dir = _run_dir(args)
    with RunFolder.for_run(run_dir) as folder:
        folder.check_api(connection.api)
        console.synced(run_dir, folder.sync(result.tasks))
        named = "-" if str(args.manifest) == STDIN else str(args.manifest.resolve())
        return _spend(args, folder, connection, manifest=named)


def cmd_resume(args: argparse.Namespace) -> int:
    with RunFolder.existing(args.run_dir) as folder:
        return _spend(args, folder, flow.connect_folder(folder))


def cmd_rerun(args: argparse.Namespace) -> int:
    statuses = [TaskStatus(flag) for flag in RERUN_FLAGS if getattr(args, flag)]
    keys = [k.strip() for k in args.keys.split(",") if k.strip()] + list(args.key)
    if not statuses and not keys:
        console.error(f"error: say what to rerun: --{', --'.join(RERUN_FLAGS)}, --keys or --key")
        return EXIT_USAGE
    classes = {*RERUN_BY_DEFAULT, *(FailureClass(c) for c in args.classes if c != "all")}
    if "all" in args.classes:
        classes = set(FailureClass)
    with RunFolder.existing(args.run_dir) as folder:
        connection = flow.connect_folder(folder)
        chosen, left_out = folder.choose_reruns(statuses, keys, classes)
        console.left_out(left_out)
        if not chosen:
            print(f"{args.run_dir}: no task to rerun")
            return EXIT_OK
        console.may_pay_twice(chosen)
        return _spend(args, folder, connection, rerun=chosen)


def _spend(
    args: argparse.Namespace,
    folder: RunFolder,
    connection: flow.Connection,
    *,
    manifest: str | None = None,
    rerun: Sequence[TaskRecord] | None = None,
) -> int:
    """``run``, ``resume`` and ``rerun`` from here on: check, ask, commit, run, report."""
    given = {spec.name: getattr(args, spec.name, None) for spec in option_specs()}
    options = RunOptions.resolve(flow.saved_options(folder.state), given)
    urls = notify.notify_urls(args.notify)
    setup_logging(
        folder.run_dir,
        verbose=args.verbose,
        secrets=[connection.api_key, *notify.secret_parts(urls)],
    )
    started = time.monotonic()
    try:
        code, stopped_by = _check_ask_run(args, folder, connection, options, manifest, rerun)
    except (KlingBatchError, KeyboardInterrupt) as exc:  # the key refused, nothing answers
        code = EXIT_INTERRUPTED
        if isinstance(exc, KlingBatchError):
            code = exit_code_for_error(exc)
        if code != EXIT_USAGE:
            why = f"before any submit: {exc or 'interrupted'}"
            _tell_owner(args, urls, folder.run_dir, code, why, time.monotonic() - started)
        raise
    if code is not None:
        _tell_owner(args, urls, folder.run_dir, code, stopped_by, time.monotonic() - started)
        return code
    return EXIT_USAGE  # declined at the question: nothing was sent, nothing to tell


def _check_ask_run(
    args: argparse.Namespace,
    folder: RunFolder,
    connection: flow.Connection,
    options: RunOptions,
    manifest: str | None,
    rerun: Sequence[TaskRecord] | None,
) -> tuple[int | None, str | None]:
    """Check the account, ask, commit, run: (exit code, why it stopped early); a code
    of None: the person said no."""
    state = folder.state
    with flow.base_url(state, connection) as url:
        checked = asyncio.run(flow.preflight(state, url, connection.api_key, options, rerun))
        if checked.account.warning:
            console.error(f"warning: {checked.account.warning}; going on without it")
        record_balance(state, checked.account.balance)
        if checked.rechecked is not None:
            console.rechecked(checked.rechecked)
        to_send = flow.to_send(state, checked.to_resubmit)
        made = flow.make_pictures(state, folder.run_dir, to_send)
        console.conversions(to_send.conversions, made)
        if not options.download and (
            run_s := run_outlives_links(len(to_send.tasks), options.submit_rate.per_second)
        ):
            console.links_die_before_the_end(folder.run_dir, run_s)
        if to_send.tasks and not console.confirm_spend(
            to_send,
            simulated=connection.api == SIMULATOR_API,
            budget_usd=options.budget_usd,
            spent_usd=state.committed_spend(),
            balance=checked.account.balance,
            assume_yes=args.yes,
        ):
            return None, None
        flow.commit(state, connection, options, manifest, checked.to_resubmit)
        if checked.to_resubmit:
            print(f"{len(checked.to_resubmit)} task(s) queued again as new attempts")
        learned = flow.learned_of(state, connection)
        return _execute(folder, url, connection.api_key, options, args.verbose, learned)


def _execute(
    folder: RunFolder,
    url: str,
    api_key: str,
    options: RunOptions,
    verbose: bool,
    learned: Learned,
) -> tuple[int, str | None]:
    """The engine, then the reports; (the exit code, why the run stopped early)."""
    state, run_dir = folder.state, folder.run_dir
    progress = _progress(options, verbose)
    try:
        outcome, balance = asyncio.run(
            flow.run_batch(folder, url, api_key, options, progress, _first, learned)
        )
    except asyncio.CancelledError:  # a second Ctrl-C: cut short, ledger still consistent
        write_reports(state, run_dir)
        console.resume_hint(run_dir, "stopped at once")
        return EXIT_INTERRUPTED, "interrupted at once (a second Ctrl-C)"
    if isinstance(outcome.stop_error, FolderChanged):
        if state.file_problem() is None:  # the lock file went; the ledger is fine
            console.error(f"stopped: {outcome.stopped_by}")
            console.resume_hint(run_dir, "stopped so that no second run can start beside it")
        else:
            console.ledger_rescued(run_dir, *flow.rescue_ledger(state), outcome.stopped_by or "")
        return EXIT_STOPPED, outcome.stopped_by
    record_balance(state, balance)
    missing = state.missing_videos()
    files = write_reports(state, run_dir)
    links = None if options.download else links_to_fetch(state.tasks(), learned.value(LINKS))
    console.outcome(run_dir, outcome, files, missing, options.download, files.video_problems, links)
    missing = missing if options.download else 0
    if outcome.bad_night:  # tasks failed; the machine and the API are fine
        return EXIT_SOME_FAILED, outcome.stopped_by
    if outcome.stopped_by:
        return EXIT_INTERRUPTED if outcome.interrupted else EXIT_STOPPED, outcome.stopped_by
    return EXIT_SOME_FAILED if missing else exit_code_for(outcome.counts), None


def _tell_owner(
    args: argparse.Namespace,
    urls: Sequence[str],
    run_dir: Path,
    code: int,
    stopped_by: str | None,
    elapsed_s: float,
) -> None:
    """The one message of the run (a summary, or an alert when it stopped early) and
    the ``--on-finish`` command; neither changes the exit code."""
    if not urls and not args.on_finish:
        return  # nobody to tell: the ledger is not read again
    summary: dict[str, object] = {}
    with contextlib.suppress(KlingBatchError, OSError, sqlite3.Error):  # a rescued ledger
        reader = RunState.open(run_dir, read_only=True)
        try:
            summary = summarize(reader, str(run_dir)).as_json()
        finally:
            reader.close()
    summary |= {
        "run_dir": str(run_dir),
        "exit_code": code,
        "stopped_by": stopped_by,
        "elapsed_s": round(elapsed_s, 1),
        "report": str(run_dir / "report.html"),
    }
    for warning in notify.send(urls, notify.summary_message(run_dir.name, summary, stopped_by)):
        logging.getLogger(__name__).warning("warning: %s (the exit code is unchanged)", warning)
    if args.on_finish:
        hook = notify.run_on_finish(args.on_finish, summary, run_dir, code, args.on_finish_timeout)
        console.on_finish(hook, args.on_finish_timeout)


def _progress(options: RunOptions, verbose: bool) -> ProgressSink:
    if sys.stderr.isatty():
        return LiveProgress(console_level=logging.DEBUG if verbose else logging.WARNING)
    return LineProgress(options.progress_every_s)


def _first(signal_name: str) -> None:
    console.error(
        f"\n{signal_name}: no new submits; waiting for requests in flight "
        "(press Ctrl-C again to quit at once; nothing is lost either way)"
    )


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
        if files.sheets:
            print(f"        {files.sheets[0]}")
    finally:
        state.close()
    return EXIT_OK


def cmd_sheet(args: argparse.Namespace) -> int:
    state = _read_folder(args.run_dir)
    try:
        pages = write_contact_sheet(state.tasks(), args.run_dir, args.run_dir.name)
    finally:
        state.close()
    print("contact sheet: " + "\n               ".join(str(page) for page in pages))
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    holder = lock_holder(args.run_dir)
    state = _read_folder(args.run_dir)
    try:
        live = holder.describe() if holder else None
        summary = summarize(state, str(args.run_dir), live_run=live)
    finally:
        state.close()
    if args.json:
        print(json.dumps(summary.as_json(), indent=2))
    else:
        status_console.status(args.run_dir, summary)
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps([model_as_json(m) for m in MODELS.values()], indent=2))
    else:
        console.models(list(MODELS.values()), DEFAULT_MODEL)
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "validate": cmd_validate,
    "run": cmd_run,
    "resume": cmd_resume,
    "rerun": cmd_rerun,
    "status": cmd_status,
    "report": cmd_report,
    "sheet": cmd_sheet,
    "models": cmd_models,
    "sim": run_simulator,
    "doctor": cmd_doctor,
}
