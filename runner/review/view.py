"""What the review page shows of a run, as JSON: each task's card (its pictures and video
as links into the run folder, its prompt and settings, status and judgement), the
counts, and what a redo of the rejected would send and cost.

Read from the ledger on every ask, and only what changed since the page last asked
(``since``: a task's ``updated_at`` or its review's time), so a page open beside a live
run of 20,000 tasks asks for a few cards a second, not all of them.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jobs import MODELS, request_from_json
from jobs.contract import Wire
from runner.core.records import Review, TaskRecord
from runner.ledger.file import LedgerReads
from runner.manifest.redo import NOT_EDITABLE, revised
from runner.manifest.rows import Problem
from runner.media.frames import POSTER_SUFFIX
from runner.reports.page import thumbnails
from runner.run.redo import rejected_redo


def cards(
    records: Sequence[TaskRecord], reviews: Mapping[str, Review], run_dir: Path
) -> list[dict[str, Any]]:
    """One card per task of ``records``, links relative to the page's ``files/``."""
    thumbs = thumbnails(records, run_dir)
    return [_card(r, reviews.get(r.task_key), thumbs.get(r.task_key), run_dir) for r in records]


def _card(
    record: TaskRecord, review: Review | None, thumb: str | None, run_dir: Path
) -> dict[str, Any]:
    request = request_from_json(record.request_json)
    video = _link(record.video_path) if record.video_path else None
    poster = Path(record.video_path).with_suffix(POSTER_SUFFIX) if record.video_path else None
    settings = {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in request.values.items()
        if value not in (None, "", ())
        and name != "prompt"
        and name not in request.model.image_fields
    }
    return {
        "key": record.task_key,
        "position": record.position,
        "row_id": record.row_id,
        "model": request.model.name,
        "prompt": request.get("prompt") or "",
        "image": Path(record.image).name if record.image else "",
        "chain": record.chain,
        "parent": record.parent,
        "settings": settings,
        "status": str(record.status),
        "error": record.error or "",
        "attempts": record.attempts,
        "est_cost_usd": record.est_cost_usd,
        "video": video,
        "poster": _link(str(poster)) if poster and (run_dir / poster).is_file() else None,
        "thumb": thumb and f"files/{thumb}",
        "video_problem": record.video_problem or "",
        "verdict": str(review.verdict) if review and review.verdict else None,
        "note": review.note if review else "",
        "edits": dict(review.edits) if review else {},
    }


def editable(model_names: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Each model's settings an edit may change, said once per model, not per card."""
    return {
        name: [
            {"name": f.name, "choices": list(f.choices)}
            for f in MODELS[name].fields
            if f.name not in NOT_EDITABLE and f.wire in _EDITABLE_WIRES
        ]
        for name in sorted(set(model_names))
        if name in MODELS
    }


LATE_COMMIT_S = 5.0
# Settings a text box can edit (lists of voices or shots stay as the manifest gave them).
_EDITABLE_WIRES = frozenset(
    {Wire.TEXT, Wire.CHOICE, Wire.INT, Wire.INT_AS_TEXT, Wire.NUMBER, Wire.BOOL}
)


def _link(relative: str) -> str:
    return "files/" + quote(Path(relative).as_posix())


def revised_once(record: TaskRecord, edits: Mapping[str, Any]) -> TaskRecord | list[Problem]:
    """``revised``, kept: the page asks every two seconds, and checking an edit plans
    its task again (its pictures looked up). A task changed since (``updated_at``) or
    edited again is checked anew."""
    made = _revised(record, json.dumps(edits, sort_keys=True))
    return list(made) if isinstance(made, tuple) else made


@functools.lru_cache(maxsize=4096)
def _revised(record: TaskRecord, edits: str) -> TaskRecord | tuple[Problem, ...]:
    made = revised(record, json.loads(edits))
    return tuple(made) if isinstance(made, list) else made


def snapshot(state: LedgerReads, run_dir: Path, since: float = 0.0) -> dict[str, Any]:
    """The cards changed after ``since``, every count, and the redo as it stands. Only
    the changed tasks are read whole (a page beside a 20,000-task night asks every two
    seconds); a judgement's time counts as its task's change."""
    reviews = state.reviews()
    judged = {key for key, review in reviews.items() if review.judged_at > since}
    changed = state.tasks_changed_since(since, also=judged)
    redo = rejected_redo(state, reviews, revise=revised_once)
    estimate = redo.estimate
    newest = max(
        [
            since,
            *(r.updated_at for r in changed),
            *(reviews[k].judged_at for k in judged),
        ]
    )
    made = cards(changed, reviews, run_dir)
    return {
        # A run's deferred writes commit up to half a second after their time: the
        # page asks again from a little earlier, so no change is skipped.
        "since": max(0.0, newest - LATE_COMMIT_S),
        "cards": made,
        "editable": editable(card["model"] for card in made),
        "counts": state.counts(),
        "verdicts": dict(Counter(str(v.verdict) for v in reviews.values() if v.verdict)),
        "redo": {
            "keys": list(estimate.keys),
            "usd": estimate.usd,
            "edited": estimate.edited,
            "problems": [str(p) for p in redo.problems],
            "busy": [r.task_key for r in redo.busy],
        },
    }
