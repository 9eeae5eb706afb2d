"""What ``kling-batch status`` says, and the words about video links that the summary
after a run shares with it. Prints, like ``runner.cli.console``; decides nothing."""

from __future__ import annotations

import time
from pathlib import Path

from runner.api.learned import SAME_LINK, SIGNS_ANEW
from runner.core.redact import terminal_safe
from runner.engine.progress import human_duration
from runner.reports.summary import LinksToFetch, RunSummary


def say(text: str = "") -> None:
    """A line to the person at the console: what came from a manifest or the network
    (a row id, a reason) is printed without its terminal controls."""
    print(terminal_safe(text))


def status(run_dir: Path, summary: RunSummary) -> None:
    counts = ", ".join(f"{n} {s}" for s, n in summary.counts.items()) or "no tasks"
    say(f"{run_dir}: {summary.done}/{summary.total} done ({counts})")
    if summary.live_run:
        say(f"  live: a run holds this folder: {summary.live_run}")
    if len(summary.by_model) > 1:
        for model, by_status in summary.by_model.items():
            shown = ", ".join(f"{n} {s}" for s, n in by_status.items())
            say(f"  {model}: {shown}")
    say(
        f"  spent ~ ${summary.spent_usd:,.2f} of an estimated ${summary.est_total_usd:,.2f} "
        "for every task once"
    )
    _balance(summary)
    _verdicts(run_dir, summary)
    _waiting_links(summary)
    if summary.generation_p50_s is not None:
        say(
            f"  generation time p50 {summary.generation_p50_s:.1f}s, "
            f"p95 {summary.generation_p95_s:.1f}s"
        )
    _in_flight(summary)
    for task in summary.stalled[:10]:
        answered = summary.last_answers.get(task.task_key)
        last = clock(answered) if answered else "none since the submit"
        say(f"  {task.status} {task.task_key:<30} {task.task_id}  last answer: {last}")
    _failures(summary)
    for unknown in summary.unknown[:10]:
        say(f"  unknown {unknown.task_key:<30} {' '.join(unknown.reason.split())[:160]}")
    if summary.videos_missing:
        say(f"  {summary.videos_missing} video(s) not downloaded yet")
    links_dying(run_dir, summary.links)
    if summary.video_problems:
        say(
            f"  {summary.video_problems} video(s) not whole or not as asked "
            "(video_problem in report.csv)"
        )
    say("next:")
    for step in summary.next_steps:
        say(f"  {step}")


def _waiting_links(summary: RunSummary) -> None:
    if not summary.waiting_links:
        return
    say(f"  {len(summary.waiting_links)} chain link(s) wait on their parents:")
    for link, parent, status in summary.waiting_links[:10]:
        say(f"    {link} waits on {parent} ({status})")
    if len(summary.waiting_links) > 10:
        say(f"    ... and {len(summary.waiting_links) - 10} more")


def _verdicts(run_dir: Path, summary: RunSummary) -> None:
    if not summary.verdicts:
        return
    judged = ", ".join(f"{n} {v}" for v, n in sorted(summary.verdicts.items()))
    say(f"  judged: {judged}")
    if summary.verdicts.get("rejected") and not summary.live_run:
        say(f"    kling-batch rerun {run_dir} --rejected   makes the rejected again")


def _in_flight(summary: RunSummary) -> None:
    oldest = summary.oldest
    if oldest is None:
        return
    say(
        f"  {len(summary.in_flight)} in flight; oldest {oldest.task_key} "
        f"({oldest.status}, {human_duration(oldest.age_s)} since submit)"
    )
    for task in summary.in_flight[:10]:
        age = human_duration(task.age_s)
        say(f"    {task.task_key:<30} {task.status:<11} {age:>8}  {task.task_id}")
    if len(summary.in_flight) > 10:
        say(f"    ... and {len(summary.in_flight) - 10} more")


def _failures(summary: RunSummary) -> None:
    """Failures by cause, then the first few with their reasons."""
    if not summary.failures_by_class:
        return
    causes = ", ".join(f"{n} {cause}" for cause, n in summary.failures_by_class.items())
    say(f"  failed by cause: {causes}")
    for failure in summary.failures[:10]:
        reason = " ".join(failure.reason.split())[:100]
        say(f"    {failure.task_key:<30} {failure.failure_class:<10} {reason}")
    if len(summary.failures) > 10:
        say(f"    ... and {len(summary.failures) - 10} more (report.csv has them all)")


def _balance(summary: RunSummary) -> None:
    if summary.balance_latest_usd is None or summary.balance_latest_at is None:
        return
    shown = summary.balance_latest or f"${summary.balance_latest_usd:,.2f}"
    line = f"  balance {shown} at {clock(summary.balance_latest_at)}"
    measured = summary.measured_spend_usd
    if measured and summary.balance_first_usd is not None:
        line += (
            f" (${summary.balance_first_usd:,.2f} at the first run): the account went down "
            f"${measured:,.2f}; an upper bound if anything else used the account meanwhile"
        )
    say(line)


def clock(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def links_dying(run_dir: Path, links: LinksToFetch, indent: str = "  ") -> None:
    """When the links of videos not fetched yet die, and what to do before: a folder
    that runs with ``--no-download`` keeps links only, and Task Result may never sign
    them anew."""
    if not links.count or links.first_dies_at is None or links.last_dies_at is None:
        return
    first, last = clock(links.first_dies_at), clock(links.last_dies_at)
    when = f"at {first}" if first == last else f"between {first} and {last}"
    say(
        f"{indent}{links.count} video link(s) not fetched die {when} (by their own "
        f"signatures): kling-batch resume {run_dir} --download fetches them before then"
    )
    if links.refreshed == SIGNS_ANEW:
        return
    seen = (
        "gave the same link again when asked"
        if links.refreshed == SAME_LINK
        else "has not been seen to sign a link anew"
    )
    say(f"{indent}after that they may be gone for good: Task Result {seen}")
