"""The failed tasks of a run, written back as manifests: ``failed.yaml`` and ``failed.csv``.

They are ordinary manifests (``validate`` accepts them unchanged): one row per failed
or expired task with every setting spelled out and the image as an absolute path or
URL, so a user can edit prompts and run them as a new batch in a new folder. Rerunning
them *in place* is ``kling-batch rerun DIR --failed`` instead, which keeps the old
attempts beside the new ones.

``unknown`` and ``stalled`` tasks are left out on purpose: they may already exist at
the API and be billed (a stalled one may still finish), so running them again is a
decision (``rerun --unknown``, ``rerun --stalled``), not a default. ``failed.yaml`` names
them in comments, with the time of a stalled task's last answer.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from jobs import MODELS
from jobs.pictures import PICTURE_FIELDS
from runner.core.atomic import write_text_atomically
from runner.core.causes import failure_class
from runner.core.records import ASKED_AGAIN, TaskRecord, TaskStatus
from runner.manifest.redo import row_of

FAILED_YAML = "failed.yaml"
FAILED_CSV = "failed.csv"
# What failed.yaml lists: tasks that ended without a video and may be run as a new batch.
LISTED_STATUSES = (TaskStatus.FAILED, TaskStatus.EXPIRED)
# Every field any model takes, in the order the models declare them: one header for all.
CSV_FIELDS = tuple(
    dict.fromkeys(
        ["id", "model", *(f.name for m in MODELS.values() for f in m.fields), *PICTURE_FIELDS]
    )
)
MAX_ID_LENGTH = 100  # the manifest's own limit on row ids


@dataclass(frozen=True)
class FailedManifests:
    yaml: Path
    csv: Path
    rows: int


def write_failed_manifests(
    all_records: Sequence[TaskRecord], run_dir: Path
) -> FailedManifests | None:
    """Write both files, or remove stale ones when nothing failed (after a good rerun)."""
    records = [r for r in all_records if r.status in LISTED_STATUSES]
    paths = (run_dir / FAILED_YAML, run_dir / FAILED_CSV)
    if not records:
        for path in paths:
            path.unlink(missing_ok=True)
        return None
    rows = [_row(record) for record in records]
    left_out = [r for r in all_records if r.status in (TaskStatus.UNKNOWN, *ASKED_AGAIN)]
    write_text_atomically(paths[0], _yaml_text(run_dir, records, rows, left_out))
    write_text_atomically(paths[1], _csv_text(rows))
    return FailedManifests(*paths, rows=len(rows))


def _row(record: TaskRecord) -> dict[str, object]:
    """Every setting of the task, explicit: the new batch must not depend on defaults."""
    row_id = record.task_key.replace("/", "-")
    if len(row_id) > MAX_ID_LENGTH:
        row_id = f"task-{record.position}"
    return {"id": row_id, **row_of(record)}


def _yaml_text(
    run_dir: Path,
    records: Sequence[TaskRecord],
    rows: Sequence[dict[str, object]],
    left_out: Sequence[TaskRecord],
) -> str:
    lines = [
        f"# The failed tasks of {run_dir}, as a manifest: edit and run it as a new batch,",
        f"# or resubmit them in place with: kling-batch rerun {run_dir} --failed --expired",
    ]
    unknown = [r for r in left_out if r.status == TaskStatus.UNKNOWN]
    stalled = [r for r in left_out if r.status == TaskStatus.STALLED]
    if unknown:
        lines.append(
            f"# {len(unknown)} 'unknown' task(s) are not listed: they may exist and be billed "
            "already (see rerun --unknown)."
        )
    if stalled:
        lines.append(
            f"# {len(stalled)} 'stalled' task(s) are not listed: they exist at the API, are "
            f"billed, and may still finish; `kling-batch resume {run_dir}` polls them again:"
        )
        lines.extend(f"#   {r.task_key}: task {r.task_id}, {_last_answer(r)}" for r in stalled)
    lost = [r for r in left_out if r.status == TaskStatus.LOST]
    if lost:
        lines.append(
            f"# {len(lost)} 'lost' task(s) are not listed: the API gave them task ids that "
            "Task Result never knew; they may exist and be billed. "
            f"`kling-batch resume {run_dir}` asks again; rerun --lost pays again:"
        )
        lines.extend(f"#   {r.task_key}: task {r.task_id}" for r in lost)
    lines.append("rows:")
    for record, row in zip(records, rows, strict=True):
        reason = " ".join((record.error or "no reason given").split())
        cause = f", {failure_class(record.error)}" if record.status == TaskStatus.FAILED else ""
        lines.append(f"  # {record.task_key} ({record.status}{cause}): {reason}")
        dumped = yaml.safe_dump([row], sort_keys=False, allow_unicode=True, width=10_000)
        lines.extend(f"  {line}" for line in dumped.splitlines())
    return "\n".join(lines) + "\n"


def _last_answer(record: TaskRecord) -> str:
    if record.last_answer_at is None:
        return "no answer from the API since the submit"
    return "last answer " + time.strftime(
        "%Y-%m-%d %H:%M:%S", time.localtime(record.last_answer_at)
    )


def _csv_text(rows: Sequence[dict[str, object]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({name: _cell(value) for name, value in row.items()})
    return out.getvalue()


def _cell(value: object) -> object:
    """A value as a CSV manifest spells it: lists ``;``-separated, segments as
    ``prompt|seconds``, booleans as true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ";".join(
            f"{v['prompt']}|{v['duration']}" if isinstance(v, dict) else str(v) for v in value
        )
    return value
