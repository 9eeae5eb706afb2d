"""``run``, ``resume`` and ``rerun`` from the folder on, as the command line says them:
check the account, ask, commit, run the engine, write the reports, tell the owner. The
rules are the library's (``runner.run.flow``); this module words and wires them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from runner.api.account import record_balance
from runner.api.learned import LINKS, Learned
from runner.api.links import run_outlives_links
from runner.cli import chain_words, console
from runner.core.errors import FolderChanged, KlingBatchError
from runner.core.exits import (
    EXIT_INTERRUPTED,
    EXIT_STOPPED,
    EXIT_USAGE,
    exit_code_for_error,
    exit_code_of_run,
)
from runner.core.logs import setup_logging
from runner.core.records import TaskRecord
from runner.engine.progress import LineProgress, LiveProgress, ProgressSink
from runner.ledger.transitions import RunState
from runner.reports import notices as notify
from runner.reports.report import write_reports
from runner.reports.summary import links_to_fetch, summarize
from runner.run import flow
from runner.run.films import asked_films, make_films
from runner.run.folder import RunFolder
from runner.run.options import RunOptions, option_specs
from runner.run.rehearsal import SIMULATOR_API


def spend(
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
        if not options.download and (links := sum(1 for t in to_send.tasks if t.parent)):
            console.error(
                f"warning: {links} chain link(s) will not be sent: a link starts from its "
                "parent's downloaded video, and this run keeps links instead (--no-download)"
            )
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
    films = make_films(state, run_dir, asked) if (asked := asked_films(state)) else []
    files = write_reports(state, run_dir)  # after the films: the page plays them
    links = None if options.download else links_to_fetch(state.tasks(), learned.value(LINKS))
    console.outcome(run_dir, outcome, files, missing, options.download, files.video_problems, links)
    chain_words.films(run_dir, films)
    code = exit_code_of_run(
        outcome.counts,
        videos_missing=missing if options.download else 0,
        stop=outcome.stop_error,
        stopped=outcome.stopped_by is not None,
    )
    return code, outcome.stopped_by


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
