"""The command line's words: every command, its arguments, and the options of the
spending commands, generated from ``runner.run.options`` (one place to add an option)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.cli.doctor_words import add_doctor_arguments
from runner.core.causes import FailureClass
from runner.manifest.rows import MAX_TASKS
from runner.reports.notices import ON_FINISH_TIMEOUT_S
from runner.run.options import option_specs
from runner.simulator import add_sim_arguments


def build_parser() -> argparse.ArgumentParser:
    """Every command and option; ``args.command`` names the command to run."""
    parser = argparse.ArgumentParser(
        prog="kling-batch",
        description="Batches of Kling video generations on Novita AI: "
        "validate, run, resume, report, sheet.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=text)

    validate = command("validate", "check a manifest: problems, count, cost")
    validate.add_argument("manifest", type=Path)
    _manifest_options(validate)

    run = command("run", "submit, poll, download and report; run again to resume")
    run.add_argument("manifest", type=Path)
    _manifest_options(run)
    run.add_argument("--out", type=Path, help="run folder (default: outputs/<manifest name>)")
    run.add_argument("--simulate", action="store_true", help="rehearse on an embedded simulator")
    _spending_options(run)

    resume = command("resume", "finish a run folder's batch (after a crash or stop)")
    resume.add_argument("run_dir", type=Path)
    _spending_options(resume)

    rerun = command("rerun", "submit chosen tasks again, as new attempts (costs)")
    rerun.add_argument("run_dir", type=Path)
    for flag, text in RERUN_FLAGS.items():
        rerun.add_argument(f"--{flag}", action="store_true", help=text)
    rerun.add_argument(
        "--rejected",
        action="store_true",
        help="tasks a person rejected (kling-batch review), each with its edits",
    )
    rerun.add_argument("--keys", default="", metavar="A,B", help="these task keys, any status")
    rerun.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="KEY",
        help="one task key, taken whole (one that holds a comma); repeatable",
    )
    rerun.add_argument(
        "--class",
        dest="classes",
        action="append",
        default=[],
        choices=[*(str(c) for c in FailureClass), "all"],
        help="with --failed, resend failures of this cause too (repeatable); by default "
        "only provider and account failures are resent: a moderation or input failure "
        "would be refused again",
    )
    _spending_options(rerun)

    review = command("review", "judge, note, edit and redo the videos from a local page")
    review.add_argument("run_dir", type=Path)
    review.add_argument("--port", type=int, default=0, help="on 127.0.0.1 (default: any free)")
    review.add_argument("--open", action="store_true", help="open it in the browser")

    export = command("export", "copy the kept videos out, with their stories")
    export.add_argument("run_dir", type=Path)
    export.add_argument(
        "--kept", type=Path, required=True, metavar="DEST", help="the folder to copy them into"
    )

    stitch = command("stitch", "join each chain's videos into one film (films/<chain>.mp4)")
    stitch.add_argument("run_dir", type=Path)
    stitch.add_argument(
        "--chain", action="append", default=None, metavar="NAME", help="this chain (repeatable)"
    )
    stitch.add_argument(
        "--all", action="store_true", help="also the whole run in manifest order (films/all.mp4)"
    )
    stitch.add_argument(
        "--crossfade", type=float, default=0.0, metavar="SECONDS", help="blend each joint"
    )

    status = command("status", "counts, spend, in flight, what comes next")
    status.add_argument("run_dir", type=Path)
    status.add_argument("--json", action="store_true", help="the same, as JSON for scripts")

    report = command("report", "rebuild report.csv and report.html")
    report.add_argument("run_dir", type=Path)
    report.add_argument(
        "--format", action="append", choices=["jsonl"], default=[], help="also report.<format>"
    )

    sheet = command("sheet", "draw every page of contact-sheet.jpg again (one tile per task)")
    sheet.add_argument("run_dir", type=Path)

    models = command("models", "every model: its fields, limits and estimate prices")
    models.add_argument("--json", action="store_true", help="the same, as JSON for scripts")

    add_doctor_arguments(
        command("doctor", "free checks of the key, the API and the clock; --spend: one task")
    )
    add_sim_arguments(command("sim", "start the local API simulator"))
    return parser


RERUN_FLAGS = {
    "failed": "tasks that failed (each one with a task id is asked about first)",
    "stalled": "tasks past their deadline: they exist, are billed and may still finish "
    "(asked about first; one still running is left alone)",
    "unknown": "tasks whose submit got no answer (they may exist and be billed already)",
    "lost": "tasks whose task id Task Result never knew (they may exist and be billed "
    "already; asked about first)",
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
            if spec.flag.startswith("--no-"):  # and its opposite, to undo a saved switch
                parser.add_argument(
                    "--" + spec.flag.removeprefix("--no-"),
                    dest=spec.name,
                    action="store_const",
                    const=not spec.switch_value,
                    help=f"undo a {spec.flag} this run folder saved",
                )
        else:
            parser.add_argument(
                spec.flag,
                dest=spec.name,
                type=_argument(spec.parse),
                metavar=spec.metavar,
                help=text,
            )
    parser.add_argument(
        "--notify",
        action="append",
        default=[],
        metavar="URL",
        help="an Apprise URL told when the run ends or stops (ntfy://, slack://, json://, "
        "mailto://, ...); repeatable; also $KLING_BATCH_NOTIFY. A secret: never saved",
    )
    parser.add_argument(
        "--notify-test", action="store_true", help="send one test message to --notify and exit"
    )
    parser.add_argument(
        "--on-finish",
        metavar="CMD",
        help="a shell command run once the reports are written: the summary as JSON on "
        "its stdin, KLING_BATCH_DIR and KLING_BATCH_EXIT in its environment",
    )
    parser.add_argument(
        "--on-finish-timeout",
        type=float,
        default=ON_FINISH_TIMEOUT_S,
        metavar="SECONDS",
        help=f"stop --on-finish after this long (default {ON_FINISH_TIMEOUT_S:g})",
    )
    parser.add_argument("-v", "--verbose", action="store_true")


def _positive_int(text: str) -> int:
    if not text.strip().isascii() or not text.strip().isdigit() or int(text) < 1:
        raise ValueError(f"a whole number, 1 or more, not {text!r}")
    return int(text)


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
        "--max-tasks",
        type=_argument(_positive_int),
        default=MAX_TASKS,
        metavar="N",
        help=f"refuse a manifest that expands to more tasks (default {MAX_TASKS:,})",
    )
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
