"""The command line: ``kling-batch validate | run | resume | rerun | status | report | sim``.

A thin adapter over the library: it parses, calls, has ``runner.cli.console`` word the
result, and maps typed errors to exit codes (``runner.core.exits``, the README's table). The
rules live elsewhere: the run folder's in ``runner.run.folder``, the spending flow in
``runner.run.flow``, the options in ``runner.run.options``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from runner.cli import chain_words, console, readers, spending
from runner.cli.arguments import RERUN_FLAGS, build_parser
from runner.cli.doctor_words import cmd_doctor
from runner.cli.review_words import cmd_review
from runner.core.causes import RERUN_BY_DEFAULT, FailureClass
from runner.core.crash import keep_traceback, machine_problem
from runner.core.errors import KlingBatchError, ManifestError
from runner.core.exits import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STOPPED,
    EXIT_USAGE,
    exit_code_for_error,
)
from runner.core.logs import survive_closed_console
from runner.core.records import TaskStatus
from runner.manifest.files import STDIN, load
from runner.manifest.plan import Plan, plan
from runner.manifest.rows import parse_overrides
from runner.reports import notices as notify
from runner.run import flow
from runner.run.folder import RunFolder
from runner.run.redo import rejected_redo
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
        return spending.spend(args, folder, connection, manifest=named)


def cmd_resume(args: argparse.Namespace) -> int:
    with RunFolder.existing(args.run_dir) as folder:
        return spending.spend(args, folder, flow.connect_folder(folder))


def cmd_rerun(args: argparse.Namespace) -> int:
    statuses = [TaskStatus(flag) for flag in RERUN_FLAGS if getattr(args, flag)]
    keys = [k.strip() for k in args.keys.split(",") if k.strip()] + list(args.key)
    if not statuses and not keys and not args.rejected:
        flags = ", --".join([*RERUN_FLAGS, "rejected"])
        console.error(f"error: say what to rerun: --{flags}, --keys or --key")
        return EXIT_USAGE
    classes = {*RERUN_BY_DEFAULT, *(FailureClass(c) for c in args.classes if c != "all")}
    if "all" in args.classes:
        classes = set(FailureClass)
    with RunFolder.existing(args.run_dir) as folder:
        connection = flow.connect_folder(folder)
        chosen, left_out = folder.choose_reruns(statuses, keys, classes)
        console.left_out(left_out)
        if args.rejected:
            redo = rejected_redo(folder.state)
            if redo.problems:
                console.problems(redo.problems)
                return EXIT_USAGE
            chain_words.rejected(redo)
            made = {t.task_key: t for t in redo.tasks}  # a task both named and rejected: edited
            chosen = [made.pop(r.task_key, r) for r in chosen] + list(made.values())
            chosen.sort(key=lambda r: r.position)
        if not chosen:
            print(f"{args.run_dir}: no task to rerun")
            return EXIT_OK
        console.may_pay_twice(chosen)
        return spending.spend(args, folder, connection, rerun=chosen)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "validate": cmd_validate,
    "run": cmd_run,
    "resume": cmd_resume,
    "rerun": cmd_rerun,
    "status": readers.cmd_status,
    "report": readers.cmd_report,
    "review": cmd_review,
    "export": readers.cmd_export,
    "stitch": readers.cmd_stitch,
    "sheet": readers.cmd_sheet,
    "models": readers.cmd_models,
    "sim": run_simulator,
    "doctor": cmd_doctor,
}
