"""What a run folder says about itself: counts, spend, what is in flight, what comes next.

One summary feeds ``kling-batch status``, the header of ``report.html`` and the
progress display, all read from the ledger, so the three can never disagree.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from jobs import model_of
from runner.api.account import Balance
from runner.api.learned import LINKS, Learned
from runner.core.causes import RERUN_BY_DEFAULT, failure_class
from runner.core.records import ASKED_AGAIN, FINAL, IN_FLIGHT, TaskRecord, TaskStatus
from runner.ledger.file import LedgerReads


@dataclass(frozen=True)
class InFlight:
    task_key: str
    status: str
    task_id: str
    age_s: float  # since the API accepted it


@dataclass(frozen=True)
class Failure:
    task_key: str
    failure_class: str  # moderation, input, provider, account (runner.core.causes)
    reason: str  # verbatim


@dataclass(frozen=True)
class LinksToFetch:
    """Video links of succeeded tasks not downloaded yet: how many, when the first and
    the last die (from their signatures, else their ttl), and whether Task Result has
    been seen to sign a link anew (``runner.api.learned``: "signs anew", "same link")."""

    count: int = 0
    first_dies_at: float | None = None
    last_dies_at: float | None = None
    refreshed: str | None = None


def links_to_fetch(records: Sequence[TaskRecord], refreshed: str | None) -> LinksToFetch:
    waiting = [
        r for r in records if r.status == TaskStatus.SUCCEEDED and r.video_url and not r.video_path
    ]
    dies = sorted(r.video_url_expires_at for r in waiting if r.video_url_expires_at is not None)
    return LinksToFetch(
        len(waiting), dies[0] if dies else None, dies[-1] if dies else None, refreshed
    )


@dataclass(frozen=True)
class RunSummary:
    total: int
    counts: dict[str, int]
    est_total_usd: float  # every task of the folder once
    spent_usd: float  # attempts the API created or may have created, all runs
    in_flight: list[InFlight]
    videos_missing: int  # succeeded, not downloaded yet
    generation_p50_s: float | None
    generation_p95_s: float | None
    started_at: float | None  # first submit
    finished_at: float | None  # last task to finish, once every task is final
    next_steps: list[str] = field(default_factory=list)
    live_run: str | None = None  # who holds the folder now, if a run does
    stalled: list[InFlight] = field(default_factory=list)
    last_answers: dict[str, float | None] = field(default_factory=dict)  # stalled key -> time
    balance_first_usd: float | None = None  # the account at this folder's first run
    balance_latest_usd: float | None = None
    balance_latest_at: float | None = None
    balance_latest: str | None = None  # as shown: cash and credit apart where known
    by_model: dict[str, dict[str, int]] = field(default_factory=dict)  # model -> status counts
    video_problems: int = 0  # videos kept or refused for not being whole or as asked
    failures_by_class: dict[str, int] = field(default_factory=dict)  # cause -> failed tasks
    failures: list[Failure] = field(default_factory=list)  # every failed task, its cause
    links: LinksToFetch = field(default_factory=LinksToFetch)  # links of videos not fetched
    # Tasks whose submit's outcome cannot be known, and why (their cause reads "unknown").
    unknown: list[Failure] = field(default_factory=list)
    verdicts: dict[str, int] = field(default_factory=dict)  # kept/rejected -> tasks judged
    # Chain links not sent, and what they wait on: (link, parent, the parent's status).
    waiting_links: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def measured_spend_usd(self) -> float | None:
        """What the account lost since the first run: an upper bound for this batch when
        anything else uses the account meanwhile (a top-up makes it wrong)."""
        if self.balance_first_usd is None or self.balance_latest_usd is None:
            return None
        return round(self.balance_first_usd - self.balance_latest_usd, 2)

    @property
    def done(self) -> int:
        return sum(self.counts.get(s, 0) for s in FINAL)

    @property
    def oldest(self) -> InFlight | None:
        return max(self.in_flight, key=lambda t: t.age_s, default=None)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["done"] = self.done
        data["oldest"] = asdict(self.oldest) if self.oldest else None
        data["measured_spend_usd"] = self.measured_spend_usd
        return data


def summarize(
    state: LedgerReads,
    run_dir_label: str = "DIR",
    now: float | None = None,
    records: Sequence[TaskRecord] | None = None,
    live_run: str | None = None,
) -> RunSummary:
    """``records``: the ledger's tasks, when the caller has read them already;
    ``live_run``: who holds the folder, when a run does (then nothing is suggested
    that would start a second one)."""
    now = time.time() if now is None else now
    records = state.tasks() if records is None else records
    counts = {str(s): 0 for s in TaskStatus}
    by_model: dict[str, dict[str, int]] = {}
    for record in records:
        counts[record.status] += 1
        model = by_model.setdefault(model_of(record.request_json), {})
        model[record.status] = model.get(record.status, 0) + 1
    in_flight = [
        InFlight(r.task_key, str(r.status), r.task_id or "", now - (r.submitted_at or now))
        for r in records
        if r.status in IN_FLIGHT
    ]
    times = sorted(r.generation_s for r in records if r.generation_s is not None)
    submitted = [r.submitted_at for r in records if r.submitted_at]
    finished = [r.finished_at for r in records if r.finished_at]
    all_final = bool(records) and all(r.status in FINAL for r in records)
    missing = state.missing_videos()
    stalled = [r for r in records if r.status in ASKED_AGAIN]  # and lost: asked again
    failures = [
        Failure(r.task_key, str(failure_class(r.error)), r.error or "")
        for r in records
        if r.status == TaskStatus.FAILED
    ]
    by_class = Counter(f.failure_class for f in failures)
    waiting = waiting_links(records)
    meta = state.meta()
    first, latest = (
        Balance.from_json(meta.get("balance_first")),
        Balance.from_json(meta.get("balance_last")),
    )
    return RunSummary(
        total=len(records),
        counts={k: v for k, v in counts.items() if v},
        est_total_usd=round(sum(r.est_cost_usd for r in records), 2),
        spent_usd=round(state.committed_spend(), 2),
        in_flight=sorted(in_flight, key=lambda t: -t.age_s),
        videos_missing=missing,
        generation_p50_s=_percentile(times, 50),
        generation_p95_s=_percentile(times, 95),
        started_at=min(submitted, default=None),
        finished_at=max(finished, default=None) if all_final else None,
        next_steps=_next_steps(
            _sendable(counts, waiting),
            len(in_flight),
            missing,
            run_dir_label,
            live_run,
            downloads=not json.loads(meta.get("options", "{}")).get("no_download"),
            expired_with_id=sum(1 for r in records if r.status == TaskStatus.EXPIRED and r.task_id),
            failed_resent=sum(n for c, n in by_class.items() if c in RERUN_BY_DEFAULT),
        ),
        live_run=live_run,
        stalled=[
            InFlight(r.task_key, str(r.status), r.task_id or "", now - (r.submitted_at or now))
            for r in stalled
        ],
        last_answers={r.task_key: r.last_answer_at for r in stalled},
        balance_first_usd=first.usd if first else None,
        balance_latest_usd=latest.usd if latest else None,
        balance_latest_at=latest.at if latest else None,
        balance_latest=latest.describe() if latest else None,
        by_model=by_model,
        video_problems=sum(1 for r in records if r.video_problem),
        failures_by_class=dict(sorted(by_class.items())),
        failures=failures,
        links=links_to_fetch(records, Learned.of_folder(state).value(LINKS)),
        unknown=[
            Failure(r.task_key, "unknown", r.error or "")
            for r in records
            if r.status == TaskStatus.UNKNOWN
        ],
        verdicts=dict(Counter(str(r.verdict) for r in state.reviews().values() if r.verdict)),
        waiting_links=waiting,
    )


# A link waiting on a parent in one of these goes only once the parent is made again.
_STUCK = frozenset(str(s) for s in FINAL | ASKED_AGAIN) - {str(TaskStatus.SUCCEEDED)}


def _sendable(counts: dict[str, int], waiting: list[tuple[str, str, str]]) -> dict[str, int]:
    """``counts`` with the links ``resume`` would not send (their parents failed,
    expired, ...) taken out of ``pending``: a rerun of the parent picks them up."""
    stuck = sum(1 for _, _, status in waiting if status in _STUCK)
    return {**counts, TaskStatus.PENDING: counts.get(TaskStatus.PENDING, 0) - stuck}


def waiting_links(records: Sequence[TaskRecord]) -> list[tuple[str, str, str]]:
    """Each pending chain link and its parent, with the parent's status ("succeeded"
    when only its video is missing)."""
    by_key = {r.task_key: r for r in records}
    waiting = []
    for record in records:
        if record.status != TaskStatus.PENDING or record.parent is None:
            continue
        parent = by_key.get(record.parent)
        status = str(parent.status) if parent is not None else "gone"
        if parent is not None and parent.status == TaskStatus.SUCCEEDED and not parent.video_path:
            status = "succeeded, its video not downloaded"
        waiting.append((record.task_key, record.parent, status))
    return waiting


def _percentile(sorted_values: list[float], percent: int) -> float | None:
    if not sorted_values:
        return None
    if len(sorted_values) == 1:
        return round(sorted_values[0], 1)
    cuts = statistics.quantiles(sorted_values, n=100, method="inclusive")
    return round(cuts[percent - 1], 1)


def _next_steps(
    counts: dict[str, int],
    in_flight: int,
    missing: int,
    run_dir: str,
    live_run: str | None,
    *,
    downloads: bool = True,
    expired_with_id: int = 0,
    failed_resent: int | None = None,
) -> list[str]:
    """What ``resume`` would do, then what only a ``rerun`` would (and would cost); while
    a run holds the folder, only to wait for it. ``downloads``: the folder's saved
    options download videos (else ``resume`` needs ``--download`` to fetch them);
    ``expired_with_id``: expired tasks whose link ``resume`` asks for again, free;
    ``failed_resent``: failed tasks ``rerun --failed`` resends by their cause."""
    if live_run:
        return [f"wait: a run is live in this folder ({live_run}); status again shows it"]
    resume = _resume_would(counts, in_flight, missing, downloads, expired_with_id)
    steps = [f"kling-batch resume {run_dir} would {', '.join(resume)}"] if resume else []
    if missing and not downloads:
        steps.append(
            f"kling-batch resume {run_dir} --download would download {missing} video(s) "
            "(this folder ran with --no-download)"
        )
    for status, flag in (
        (TaskStatus.FAILED, "--failed"),
        (TaskStatus.EXPIRED, "--expired"),
        (TaskStatus.UNKNOWN, "--unknown"),
        (TaskStatus.STALLED, "--stalled"),
        (TaskStatus.LOST, "--lost"),
    ):
        count = counts[status]
        if status == TaskStatus.FAILED and failed_resent is not None and count:
            kept = count - failed_resent
            count = failed_resent
            if kept:
                steps.append(
                    f"{kept} failed task(s) were refused for their content or input: "
                    f"edit them (failed.yaml), or kling-batch rerun {run_dir} --failed "
                    "--class all resends them as they are"
                )
        if count:
            note = _RERUN_NOTES.get(status, "")
            steps.append(
                f"kling-batch rerun {run_dir} {flag} would resubmit {count} {status} task(s){note}"
            )
    return steps or ["nothing: every task succeeded and every video is here"]


def _resume_would(
    counts: dict[str, int], in_flight: int, missing: int, downloads: bool, expired_with_id: int
) -> list[str]:
    """What ``resume`` would do, in a few words each (``downloads``: whether the
    folder's saved options download videos)."""
    resume = []
    if counts[TaskStatus.PENDING]:
        resume.append(f"submit {counts[TaskStatus.PENDING]} pending")
    if in_flight:
        resume.append(f"poll {in_flight} in flight")
    if counts[TaskStatus.STALLED]:
        resume.append(f"poll {counts[TaskStatus.STALLED]} stalled again")
    if counts[TaskStatus.LOST]:
        resume.append(f"ask Task Result about {counts[TaskStatus.LOST]} lost again")
    if missing and downloads:
        resume.append(f"download {missing} video(s)")
    if expired_with_id and downloads:
        resume.append(f"ask for a fresh link to {expired_with_id} expired video(s) (free)")
    return resume


_RERUN_NOTES = {
    TaskStatus.UNKNOWN: " (they may exist and be billed already)",
    TaskStatus.STALLED: " (billed already, and they may still finish: resume first)",
    TaskStatus.EXPIRED: " (pays again: resume first asks for a fresh link, free)",
    TaskStatus.LOST: " (they may exist and be billed already: resume asks again first)",
}


def same_input(row_id: object, image: object, prompt: object, duration: object) -> tuple[str, ...]:
    """What makes tasks "the same input" when a run compares models (the row, the image
    as typed, the prompt, the length; the models differ in the rest): the page's table
    and the contact sheet both put one input on one line by it."""
    return (str(row_id), str(image), str(prompt), str(duration))


def no_video_reason(status: str) -> str:
    """Why a task has no video, in a few words (the page's cards, the contact sheet)."""
    return {
        "succeeded": "not downloaded yet",
        "failed": "no video: failed",
        "unknown": "no video: submit outcome unknown",
        "expired": "no video: link expired",
        "stalled": "no video yet: still running at the API at its deadline (resume polls it)",
        "lost": "no video yet: Task Result never knew its task id (resume asks again)",
        "retired": "not sent: no longer in the manifest",
    }.get(status, "not finished yet")
