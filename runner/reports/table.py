"""The report as a table, one line per task, from the ledger alone (pandas): what
``report.csv``, ``report-excel.csv`` and ``report.jsonl`` hold, and the page's rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from jobs import request_from_json
from runner.core.causes import failure_class
from runner.core.records import Review, TaskRecord, TaskStatus
from runner.media.frames import POSTER_SUFFIX
from runner.media.picture_pool import planned_pictures

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
COLUMNS = [
    "task_key",
    "row_id",
    "source",
    "image",
    "prompt",
    "duration",
    "aspect_ratio",
    "sound",
    "status",
    "task_id",
    "attempts",
    "error",
    "video_url",
    "video_path",
    "submitted_at",
    "finished_at",
    "generation_s",
    "est_cost_usd",
    "negative_prompt",
    "cfg_scale",
    "voice_list",
    "last_answer_at",
    "model",
    "settings",  # the model's other settings (mode, end_image, multi_prompt, ...), as JSON
    "video_s",  # the video's duration, measured from its file
    "video_problem",  # empty when the video is whole and as asked
    "poster_path",  # the video's first frame, beside it
    "failure_class",  # a failed task's cause: moderation, input, provider, account
    "sent_image",  # the picture as converted and sent (images/...); empty: sent as it is
    "conversion",  # what was done to it
    "video_url_expires_at",  # when video_url dies: by its own signature, else its ttl
    "verdict",  # kept or rejected by a person (kling-batch review); empty: not judged
    "note",  # what they wrote of it
    "chain",  # the chain a task belongs to (its first link's row id); empty: none
    "parent",  # a link: the task whose last frame is its first
]
# Settings with a column of their own; the rest of a model's settings go in "settings".
_OWN_COLUMNS = frozenset(
    {
        "image",
        "prompt",
        "duration",
        "aspect_ratio",
        "sound",
        "negative_prompt",
        "cfg_scale",
        "voice_list",
    }
)


def build_frame(
    records: Sequence[TaskRecord],
    run_dir: Path | None = None,
    reviews: Mapping[str, Review] | None = None,
) -> pd.DataFrame:
    """One line per task; ``reviews``: each judged task's review of its latest attempt."""
    rows = []
    reviews = reviews or {}
    for record in records:
        review = reviews.get(record.task_key)
        request = request_from_json(record.request_json)
        voices = request.get("voice_list")
        rows.append(
            {
                "task_key": record.task_key,
                "row_id": record.row_id,
                "source": record.source,
                "image": record.image,
                "prompt": request.get("prompt"),
                "duration": request.get("duration"),
                "aspect_ratio": request.get("aspect_ratio"),
                "sound": request.get("sound"),
                "status": str(record.status),
                "task_id": record.task_id,
                "attempts": record.attempts,
                "error": record.error,
                "video_url": record.video_url,
                "video_path": record.video_path,
                "submitted_at": iso_time(record.submitted_at),
                "finished_at": iso_time(record.finished_at),
                "generation_s": None
                if record.generation_s is None
                else round(record.generation_s, 1),
                "est_cost_usd": record.est_cost_usd,
                "negative_prompt": request.get("negative_prompt"),
                "cfg_scale": request.get("cfg_scale"),
                "voice_list": ";".join(voices) if voices is not None else None,
                "last_answer_at": iso_time(record.last_answer_at),
                "model": request.model.name,
                "settings": _other_settings(request.values),
                "video_s": record.video_s,
                "video_problem": record.video_problem,
                "poster_path": _poster(record, run_dir),
                "failure_class": str(failure_class(record.error))
                if record.status == TaskStatus.FAILED
                else None,
                **sent_image_columns(record, run_dir),
                "video_url_expires_at": iso_time(record.video_url_expires_at),
                "verdict": str(review.verdict) if review and review.verdict else None,
                "note": review.note if review and review.note else None,
                "chain": record.chain,
                "parent": record.parent,
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def _poster(record: TaskRecord, run_dir: Path | None) -> str | None:
    if not record.video_path or run_dir is None:
        return None
    poster = Path(record.video_path).with_suffix(POSTER_SUFFIX)
    return str(poster) if (run_dir / poster).is_file() else None


def _other_settings(values: dict[str, Any]) -> str | None:
    other = {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in values.items()
        if name not in _OWN_COLUMNS and value not in (None, "", ())
    }
    return json.dumps(other, ensure_ascii=False, sort_keys=True) if other else None


def for_spreadsheets(frame: pd.DataFrame) -> str:
    """``report.csv`` as a spreadsheet should open it. A text cell that starts like a
    formula (``=``, ``+``, ``-``, ``@``) gets a leading apostrophe, the usual defence
    against CSV formula injection: a prompt such as ``=HYPERLINK(...)`` stays text.
    ``report.csv`` itself is left exact, for pandas and scripts."""
    safe = frame.map(
        lambda v: f"'{v}" if isinstance(v, str) and v.startswith(_FORMULA_STARTS) else v
    )
    return "\ufeff" + safe.to_csv(index=False)


def sent_image_columns(record: TaskRecord, run_dir: Path | None) -> dict[str, str | None]:
    """The first frame as converted and sent, and what was done: beside ``image`` (the
    file as the manifest names it), so a person sees both."""
    pictures = {p.field: p for p in planned_pictures(record)}
    first = pictures.get("image")
    if first is None:
        return {"sent_image": None, "conversion": None}
    sent = str(run_dir / first.name) if run_dir is not None else first.name
    return {"sent_image": sent, "conversion": first.conversion.describe()}


def iso_time(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
