"""What the command line says to a person: estimates, the question before spending, the
summary after a run, ``status``. The only module besides ``cli`` that prints; it
decides nothing (the library does), it only words it.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from jobs.contract import Model
from runner.api.account import Balance, tasks_covered
from runner.api.links import DOCUMENTED_TTL_S
from runner.cli import chain_words
from runner.cli.status_words import links_dying, say
from runner.core.causes import failure_class
from runner.core.errors import BadNight, BalanceExhausted, Interrupted
from runner.core.records import TaskRecord, TaskStatus
from runner.core.redact import terminal_safe
from runner.engine.progress import human_duration, progress_line
from runner.engine.recheck import Recheck
from runner.engine.wiring import RunOutcome
from runner.manifest.plan import LARGE_BATCH_USD, Plan
from runner.media.picture_pool import Converted, PlannedPicture
from runner.reports.notices import HookResult
from runner.reports.report import ReportFiles
from runner.reports.summary import LinksToFetch
from runner.run.folder import SyncSummary

TIER_LABELS = {"silent": "no sound", "sound": "with sound", "sound_voices": "sound + voices"}
MAY_PAY_TWICE = {
    TaskStatus.UNKNOWN: "an 'unknown' task may already exist at the API and be billed",
    TaskStatus.STALLED: "a 'stalled' task exists at the API, is billed, and may still finish",
    TaskStatus.LOST: "a 'lost' task was given a task id: it may exist at the API and be billed",
}


def error(text: str) -> None:
    print(terminal_safe(text), file=sys.stderr)


def problems(found: Sequence[object]) -> None:
    error(f"{len(found)} problem(s); nothing was submitted:")
    for problem in found:
        error(f"  {problem}")


def estimate(result: Plan, title: str) -> None:
    say(title)
    several = len(result.prices) > 1
    for model, duration, tier, count, cost in result.cost_breakdown():
        label = TIER_LABELS.get(tier, tier)
        on = f" on {model}" if several else ""
        say(f"  {count:>6} x {duration:>2}s {label:<15} ~ ${cost:,.2f}{on}")
    say(f"  total (estimate) ~ ${result.total_cost:,.2f}")
    if result.large:
        error(
            f"warning: this is a large batch: {len(result.tasks):,} task(s), about "
            f"${result.total_cost:,.2f} (over ${LARGE_BATCH_USD:,.0f}); check that the lists "
            "and repeats expand as you meant"
        )
    for model, table in result.prices.items():
        shown = ", ".join(f"{tier} ${usd:g}/s" for tier, usd in table.items())
        say(f"  prices{f' ({model})' if several else ''}: {shown}")
    if result.sound_by_default:
        say(
            f"  note: {result.sound_by_default} task(s) say nothing about sound, so they get it "
            "(the API's default), at twice the price; set sound: false to save"
        )


def validated(result: Plan, manifest: Path) -> None:
    rows = len({t.row_id for t in result.tasks})
    estimate(result, f"{manifest}: OK, {len(result.tasks)} task(s) from {rows} row(s)")
    for pattern, files in result.patterns.items():
        say(f"  image {pattern}: {files} file(s)")
    if result.url_images:
        say(f"  {result.url_images} task(s) use image URLs: the API fetches and checks those")
    chain_words.chains(result)
    conversions(result.conversions)


def conversions(
    planned: Sequence[PlannedPicture], made: Mapping[str, Converted] | None = None
) -> None:
    """Every picture converted before it is sent, file by file, then a count per kind
    (``validate`` knows the sizes to come; a run says what it made)."""
    if not planned:
        return
    say(f"  {len(planned)} picture(s) converted before sending (the rest are sent as they are):")
    for picture in planned:
        size = f"{megabytes(picture.conversion.facts.size_bytes)}"
        done = made.get(picture.name) if made else None
        if done is not None and not done.problem:
            size += f" -> {megabytes(done.size_bytes)}"
        say(f"    {Path(picture.original).name}: {picture.conversion.describe()}, {size}")
    kinds = Counter(kind for p in planned for kind, _ in p.conversion.steps())
    by_kind = sorted(kinds.items(), key=lambda item: (-item[1], item[0]))
    say("  by kind: " + ", ".join(f"{count} {kind}" for kind, count in by_kind))


def megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB" if size >= 100_000 else f"{size / 1000:.0f} KB"


def synced(run_dir: Path, summary: SyncSummary) -> None:
    say(f"{run_dir}: {summary.planned} task(s): {summary.added} new, {summary.pending} to submit")
    if summary.retired:
        say(
            f"  {summary.retired} pending task(s) retired: their rows (or repeats) are no "
            "longer in the manifest, so they are not sent"
        )


def left_out(records: Sequence[TaskRecord]) -> None:
    """Failed tasks a rerun does not resend, by cause: the same request would be
    refused again."""
    if not records:
        return
    causes = Counter(str(failure_class(r.error)) for r in records)
    said = ", ".join(f"{n} {cause}" for cause, n in sorted(causes.items()))
    say(
        f"left out {len(records)} failed task(s) ({said}): sent again as they are, they "
        "would be refused again; edit them (failed.yaml lists them) or add "
        + " ".join(f"--class {cause}" for cause in sorted(causes))
        + " to resend them anyway"
    )


def on_finish(hook: HookResult, timeout_s: float) -> None:
    """What the ``--on-finish`` command did, on the console and in run.log (one log
    line: the console's handler shows it)."""
    said = (
        f"--on-finish ran out of its {timeout_s:g} s and was stopped"
        if hook.exit_code is None
        else f"--on-finish exited {hook.exit_code}"
    )
    tail = hook.tail.strip()
    said += f"; its output ended:\n{tail}" if tail else ""
    level = logging.INFO if hook.exit_code == 0 else logging.WARNING
    logging.getLogger(__name__).log(level, "%s", said)


def may_pay_twice(chosen: Sequence[TaskRecord]) -> None:
    for status, why in MAY_PAY_TWICE.items():
        if any(r.status == status for r in chosen):
            say(f"note: {why}; rerunning it can pay twice for that row")


def rechecked(outcome: Recheck) -> None:
    """What the API said of the tasks a rerun would pay for again."""
    if outcome.finished:
        say(
            f"{len(outcome.finished)} task(s) succeeded at the API after all: their videos "
            "are fetched, nothing is paid again"
        )
    if outcome.running:
        keys = ", ".join(r.task_key for r in outcome.running[:10])
        say(
            f"{len(outcome.running)} task(s) are still running at the API, so not "
            f"resubmitted: {keys} (this run polls them)"
        )
    for record, why in outcome.unanswered:
        error(
            f"{record.task_key}: not resubmitted: the API could not be asked about task "
            f"{record.task_id} ({why}); try again later"
        )


def confirm_spend(
    to_send: Plan,
    *,
    simulated: bool,
    budget_usd: float | None,
    spent_usd: float,
    balance: Balance | None,
    assume_yes: bool,
) -> bool:
    """Show what is about to be spent and ask; True means go."""
    estimate(to_send, "would cost (simulated: free):" if simulated else "to spend now:")
    if budget_usd is not None:
        say(
            f"  budget ${budget_usd:,.2f}: ${spent_usd:,.2f} already spent in this folder; "
            "submitting stops before the estimate would pass it"
        )
    short = balance is not None and to_send.total_cost > balance.usd
    if balance is not None:
        say(f"  balance {balance.describe()} (the account, now)")
        _covers(to_send, balance, short)
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        error("refusing to spend without --yes when there is no terminal to ask")
        return False
    try:
        answer = input("submit anyway? [y/N] " if short else "submit these tasks? [y/N] ")
    except (EOFError, KeyboardInterrupt):  # Ctrl-D or Ctrl-C at the question: a "no"
        answer = ""
        say()
    if answer.strip().lower() in ("y", "yes"):
        return True
    error("declined: nothing was sent")
    return False


def _covers(to_send: Plan, balance: Balance, short: bool) -> None:
    """How many of the tasks the balance pays for: from the cash alone when the
    available balance leans on a credit line, so a person sees what the credit adds."""
    costs = [t.est_cost_usd for t in to_send.tasks]
    on_credit = bool(balance.credit_usd) and balance.cash_usd is not None
    cash_short = on_credit and to_send.total_cost > (balance.cash_usd or 0.0)
    if not short and not cash_short:
        return
    covered = tasks_covered(costs, balance.usd)
    line = f"  the balance covers about {covered} of these {len(to_send.tasks)} task(s)"
    if on_credit:
        cash = tasks_covered(costs, balance.cash_usd or 0.0)
        line += f" counting the credit line, {cash} from the cash alone"
    say(line)
    if short:
        say("  the API stops the run when it runs out (resume continues after a top-up)")


def links_die_before_the_end(run_dir: Path, run_s: float) -> None:
    """``--no-download`` on a run longer than a video link lives."""
    error(
        f"warning: --no-download keeps links only, and a link lives about "
        f"{human_duration(DOCUMENTED_TTL_S)} (video_url_ttl) while this run takes about "
        f"{human_duration(run_s)}: the first videos' links die before it ends.\n"
        f"  Task Result may not sign them anew: let it download, or run "
        f"`kling-batch resume {run_dir} --download` while they live"
    )


def resume_hint(run_dir: Path, what: str) -> None:
    error(
        f"{what}: state is saved in {run_dir}\n"
        f"  to continue: kling-batch resume {run_dir} (or the same run command again)"
    )


def _stopped_early(run_dir: Path, result: RunOutcome) -> bool:
    """What stopped the run early, and how to go on; False when nothing did."""
    if isinstance(result.stop_error, Interrupted):
        resume_hint(run_dir, f"interrupted ({result.stop_error})")
        return True
    only_submits = {  # submitting stopped; what was in flight was polled and fetched
        BalanceExhausted: ("the tasks created before it", "wait for a top-up", "top up the "
                           "Novita balance"),
        BadNight: ("the tasks in flight", "left pending. Look at the reasons (status, "
                   "report.html), fix what they have in common", "a bad night stopped itself"),
    }  # fmt: skip
    for kind, (before, waiting, hint) in only_submits.items():
        if isinstance(result.stop_error, kind):
            pending = result.counts.get(TaskStatus.PENDING, 0)
            error(
                f"stopped submitting: {result.stopped_by}\n"
                f"  {before} were polled and fetched; {pending} task(s) {waiting}"
            )
            resume_hint(run_dir, hint)
            return True
    if result.stopped_by:
        error(f"stopped: {result.stopped_by}")
        resume_hint(run_dir, getattr(result.stop_error, "hint", "") or "fix the cause")
        return True
    return False


def outcome(
    run_dir: Path,
    result: RunOutcome,
    files: ReportFiles,
    missing_videos: int,
    downloads: bool = True,
    video_problems: int = 0,
    links: LinksToFetch | None = None,
) -> None:
    """The summary after a run: counts, spend, where the report is, what comes next
    (``links``: with ``--no-download``, the links kept and when they die)."""
    say(f"done in {result.elapsed_s:.1f}s: {progress_line(result.counts, 0)}")
    say(
        f"  {result.created} task(s) created this run, {result.polls} polls, "
        f"{result.downloaded} video(s) downloaded; estimated spend ${result.spent_usd:,.2f}"
    )
    say(f"  report: {files.csv}\n          {files.html}")
    if files.sheets:
        more = f" (+{len(files.sheets) - 1} page(s))" if len(files.sheets) > 1 else ""
        say(f"  contact sheet: {files.sheets[0].path}{more}")
    if files.failed_yaml:
        say(f"  failed rows as a manifest: {files.failed_yaml}")
    if _stopped_early(run_dir, result):
        return
    for gate, (count, why) in result.held.items():
        say(
            f"  {count} task(s) of {gate} held by its canary ({why}); nothing was paid for "
            f"them. Look at the reason, then kling-batch resume {run_dir} sends a new "
            "canary (or --wire FIELD=FORM, or --canary off)"
        )
    if result.budget_reached:
        pending = result.counts.get(TaskStatus.PENDING, 0)
        say(
            f"  budget reached: {pending} task(s) left pending; "
            f"raise it with: kling-batch resume {run_dir} --budget USD"
        )
    stalled = result.counts.get(TaskStatus.STALLED, 0)
    if stalled:
        say(
            f"  {stalled} task(s) stalled: still running at the API (or unanswered) at their "
            f"deadline; they are billed either way and may still finish.\n"
            f"  kling-batch resume {run_dir} polls them again and fetches their videos"
        )
    lost = result.counts.get(TaskStatus.LOST, 0)
    if lost:
        say(
            f"  {lost} task(s) lost: the API gave them task ids that Task Result never knew "
            "up to the deadline; they may exist and be billed, so nothing resends them.\n"
            f"  kling-batch resume {run_dir} asks again (and fetches any that turned up); "
            "rerun --lost pays again"
        )
    if missing_videos and downloads:
        say(f"  {missing_videos} video(s) not downloaded yet: run again to fetch them")
    elif missing_videos:
        say(f"  {missing_videos} video(s) not downloaded (--no-download)")
        links_dying(run_dir, links or LinksToFetch())
    if video_problems:
        say(
            f"  {video_problems} video(s) are not as asked or arrived damaged: see "
            "video_problem in the report"
        )
    expired = result.counts.get(TaskStatus.EXPIRED, 0)
    if expired:
        say(
            f"  {expired} video(s) expired before they could be fetched: kling-batch resume "
            f"{run_dir} asks for fresh links first (free); rerun --expired pays again"
        )


def ledger_rescued(run_dir: Path, copy: Path, restored_to: Path | None, reason: str) -> None:
    error(f"stopped: {reason}")
    if restored_to is not None:
        error(f"  the ledger was restored from this process to {restored_to}")
        resume_hint(run_dir, "nothing is lost")
    else:
        error(
            f"  this process's ledger is saved as {copy}; the ledger's place holds another "
            f"file now.\n  move that one aside and {copy.name} into its place, then resume"
        )


def models(listed: Sequence[Model], default: str) -> None:
    """``kling-batch models``: what each model takes, and the prices estimates use."""
    for model in listed:
        mark = " (the default)" if model.name == default else ""
        say(f"{model.name}{mark}: {model.kind.value}, POST {model.path}")
        say(f"  {model.doc_url}")
        for spec in model.fields:
            say(f"  {spec.name:<16} {spec.describe()}")
        prices = ", ".join(f"{tier} ${usd:g}/s" for tier, usd in model.prices.items())
        say(f"  prices (estimates): {prices}")
        if model.notes:
            say(f"  note: {model.notes}")
