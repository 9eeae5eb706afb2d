"""The command line: ``kling-batch validate | run | resume | rerun | status | report | sim``.

A thin adapter over the library: it parses, calls, has ``runner.console`` word the
result, and maps typed errors to exit codes (``runner.exits``, the README's table). The
rules live elsewhere: the run folder's in ``runner.folder``, the spending flow in
``runner.flow``, the options in ``runner.options``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from runner import console, flow
from runner.crash import keep_traceback, machine_problem
from runner.errors import FolderChanged, KlingBatchError, ManifestError
from runner.exits import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_STOPPED,
    EXIT_USAGE,
    exit_code_for,
    exit_code_for_error,
)
from runner.folder import RunFolder, require_ledger
from runner.lock import lock_holder
from runner.logs import setup_logging
from runner.manifest import parse_overrides
from runner.manifest_files import load
from runner.options import RunOptions, option_specs
from runner.plan import Plan, plan
from runner.progress import LineProgress, LiveProgress, ProgressSink, progress_line
from runner.records import TaskRecord, TaskStatus
from runner.rehearsal import SIMULATOR_API
from runner.report import write_reports
from runner.sim_hosting import add_sim_arguments, run_simulator
from runner.state import RunState
from runner.status import summarize


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code: int = args.handler(args)
        return code
    except KlingBatchError as exc:  # refused or stopped before anything was sent
        return _refused(exc, args)
    except KeyboardInterrupt:
        console.error("\ninterrupted: state is saved; `kling-batch resume DIR` continues")
        return EXIT_INTERRUPTED
    except Exception as exc:  # the last line of defence: no traceback reaches a user
        return _unexpected(exc, args)


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
    return Path(given) if given else Path("outputs") / (manifest.stem if manifest else "DIR")


# --- the parser ------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kling-batch",
        description="Batches of Kling V2.6 Pro image-to-video on Novita AI: "
        "validate, run, resume, report.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler: Callable[[argparse.Namespace], int], text: str) -> Any:
        sub = commands.add_parser(name, help=text)
        sub.set_defaults(handler=handler)
        return sub

    validate = command("validate", cmd_validate, "check a manifest: problems, count, cost")
    validate.add_argument("manifest", type=Path)
    _manifest_options(validate)

    run = command("run", cmd_run, "submit, poll, download and report; run again to resume")
    run.add_argument("manifest", type=Path)
    _manifest_options(run)
    run.add_argument("--out", type=Path, help="run folder (default: outputs/<manifest name>)")
    run.add_argument("--simulate", action="store_true", help="rehearse on an embedded simulator")
    _spending_options(run)

    resume = command("resume", cmd_resume, "finish a run folder's batch (after a crash or stop)")
    resume.add_argument("run_dir", type=Path)
    _spending_options(resume)

    rerun = command("rerun", cmd_rerun, "submit chosen tasks again, as new attempts (costs)")
    rerun.add_argument("run_dir", type=Path)
    for flag, text in RERUN_FLAGS.items():
        rerun.add_argument(f"--{flag}", action="store_true", help=text)
    rerun.add_argument("--keys", default="", metavar="A,B", help="these task keys, any status")
    _spending_options(rerun)

    status = command("status", cmd_status, "counts, spend, in flight, what comes next")
    status.add_argument("run_dir", type=Path)
    status.add_argument("--json", action="store_true", help="the same, as JSON for scripts")

    report = command("report", cmd_report, "rebuild report.csv and report.html")
    report.add_argument("run_dir", type=Path)
    report.add_argument(
        "--format", action="append", choices=["jsonl"], default=[], help="also report.<format>"
    )

    add_sim_arguments(command("sim", run_simulator, "start the local API simulator"))
    return parser


RERUN_FLAGS = {
    "failed": "tasks that failed (each one with a task id is asked about first)",
    "stalled": "tasks past their deadline: they exist, are billed and may still finish "
    "(asked about first; one still running is left alone)",
    "unknown": "tasks whose submit got no answer (they may exist and be billed already)",
    "expired": "tasks whose video was lost",
}


def _spending_options(parser: argparse.ArgumentParser) -> None:
    """Every RunOptions field, as its flag. They default to None, so that ``resume`` and
    ``rerun`` tell "not given" (use what the run folder saved) from a value."""
    parser.add_argument("--yes", action="store_true", help="spend without asking")
    for spec in option_specs():
        text = f"{spec.help} (default {spec.default})" if spec.parse else spec.help
        if spec.parse is None:
            parser.add_argument(
                spec.flag, dest=spec.name, action="store_const", const=spec.switch_value, help=text
            )
        else:
            parser.add_argument(
                spec.flag,
                dest=spec.name,
                type=_argument(spec.parse),
                metavar=spec.metavar,
                help=text,
            )
    parser.add_argument("-v", "--verbose", action="store_true")


def _argument(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse shows the message of an ArgumentTypeError, not of a ValueError."""

    def read(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    read.__name__ = parse.__name__
    return read


def _manifest_options(parser: argparse.ArgumentParser) -> None:
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


# --- commands ----------------------------------------------------------------------


def _load_plan(args: argparse.Namespace) -> Plan | None:
    try:
        overrides = parse_overrides(args.set)
        prices = parse_overrides(args.price_per_second, "--price-per-second")
    except ValueError as exc:
        console.error(f"error: {exc}")
        return None
    result = plan(load(args.manifest, overrides), prices)
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
        return _spend(args, folder, connection, manifest=str(args.manifest.resolve()))


def cmd_resume(args: argparse.Namespace) -> int:
    with RunFolder.existing(args.run_dir) as folder:
        return _spend(args, folder, flow.connect_folder(folder))


def cmd_rerun(args: argparse.Namespace) -> int:
    statuses = [TaskStatus(flag) for flag in RERUN_FLAGS if getattr(args, flag)]
    keys = [k.strip() for k in args.keys.split(",") if k.strip()]
    if not statuses and not keys:
        console.error(f"error: say what to rerun: --{', --'.join(RERUN_FLAGS)} or --keys")
        return EXIT_USAGE
    with RunFolder.existing(args.run_dir) as folder:
        connection = flow.connect_folder(folder)
        chosen = folder.choose_reruns(statuses, keys)
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
    state = folder.state
    given = {spec.name: getattr(args, spec.name, None) for spec in option_specs()}
    options = RunOptions.resolve(flow.saved_options(state), given)
    setup_logging(folder.run_dir, verbose=args.verbose, secrets=[connection.api_key])
    with flow.base_url(state, connection) as url:
        checked = asyncio.run(flow.preflight(state, url, connection.api_key, options, rerun))
        if checked.account.warning:
            console.error(f"warning: {checked.account.warning}; going on without it")
        flow.remember_balance(state, checked.account.balance)
        if checked.rechecked is not None:
            console.rechecked(checked.rechecked)
        to_send = flow.to_send(state, checked.to_resubmit)
        if to_send.tasks and not console.confirm_spend(
            to_send,
            simulated=connection.api == SIMULATOR_API,
            budget_usd=options.budget_usd,
            spent_usd=state.committed_spend(),
            balance=checked.account.balance,
            assume_yes=args.yes,
        ):
            return EXIT_USAGE
        flow.commit(state, connection, options, manifest, checked.to_resubmit)
        if checked.to_resubmit:
            print(f"{len(checked.to_resubmit)} task(s) queued again as new attempts")
        return _execute(folder, url, connection.api_key, options, args.verbose)


def _execute(folder: RunFolder, url: str, api_key: str, options: RunOptions, verbose: bool) -> int:
    state, run_dir = folder.state, folder.run_dir
    try:
        outcome, balance = asyncio.run(
            flow.run_batch(folder, url, api_key, options, _progress(options, verbose), _first)
        )
    except asyncio.CancelledError:  # a second Ctrl-C: cut short, ledger still consistent
        write_reports(state, run_dir)
        console.resume_hint(run_dir, "stopped at once")
        return EXIT_INTERRUPTED
    if isinstance(outcome.stop_error, FolderChanged):
        if state.file_problem() is None:  # the lock file went; the ledger is fine
            console.error(f"stopped: {outcome.stopped_by}")
            console.resume_hint(run_dir, "stopped so that no second run can start beside it")
        else:
            console.ledger_rescued(run_dir, *flow.rescue_ledger(state), outcome.stopped_by or "")
        return EXIT_STOPPED
    flow.remember_balance(state, balance)
    missing = state.missing_videos() if options.download else 0
    console.outcome(run_dir, outcome, write_reports(state, run_dir), missing)
    if outcome.stopped_by:
        return EXIT_INTERRUPTED if outcome.interrupted else EXIT_STOPPED
    return EXIT_SOME_FAILED if missing else exit_code_for(outcome.counts)


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
    finally:
        state.close()
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
        console.status(args.run_dir, summary)
    return EXIT_OK
