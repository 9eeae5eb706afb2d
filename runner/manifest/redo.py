"""A ledger task as a manifest row, and the same task with a person's edits, checked.

A redo with an edited prompt or setting is checked by the very validation a manifest
gets (``plan``), so an edit made on the review page is refused with the same words a
manifest row would be; the edited task keeps its key, its video name and its pictures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from jobs import DEFAULT_MODEL, request_from_json
from jobs.pictures import PICTURE_FIELDS
from runner.core.records import TaskRecord
from runner.manifest.plan import plan
from runner.manifest.rows import Manifest, Problem, Row
from runner.media.picture_pool import picture_settings

# What an edit may not change: the task is the same picture made again, by the same model.
NOT_EDITABLE = frozenset({"id", "model", "image", "end_image", *PICTURE_FIELDS})


def row_of(record: TaskRecord) -> dict[str, Any]:
    """Every setting of the task, explicit (a row must not depend on defaults), and
    what it asked of its pictures, without an id."""
    request = request_from_json(record.request_json)
    row: dict[str, Any] = {}
    if request.model.name != DEFAULT_MODEL:
        row["model"] = request.model.name
    for name, value in request.values.items():
        if value is None or value == "" or value == ():
            continue
        row[name] = (
            [dict(v) if isinstance(v, dict) else v for v in value]
            if isinstance(value, tuple)
            else value
        )
    row.update(picture_settings(record.pictures))
    return row


def revised(record: TaskRecord, edits: Mapping[str, Any]) -> TaskRecord | list[Problem]:
    """``record`` with ``edits`` applied (its request, fingerprint, estimate and
    pictures), or what is wrong with them, located at the task's manifest row."""
    refused = [
        Problem(
            file=_file_of(record),
            row=record.row_id,
            line=_line_of(record),
            field=name,
            value=value,
            rule="not changed by an edit: the redo makes the same picture with the same model",
        )
        for name, value in edits.items()
        if name in NOT_EDITABLE
    ]
    if refused:
        return refused
    values = {"id": record.row_id, **row_of(record), **edits}
    values = {k: v for k, v in values.items() if v is not None and v != ""}
    manifest = Manifest(
        path=Path(_file_of(record)), rows=[Row(number=1, line=_line_of(record), values=values)]
    )
    checked = plan(manifest)
    if checked.problems:
        return checked.problems
    task = checked.tasks[0]
    return replace(
        record,
        request_json=task.request_json(),
        fingerprint=task.fingerprint,
        est_cost_usd=task.est_cost_usd,
        pictures=task.pictures_json(),
    )


def _file_of(record: TaskRecord) -> str:
    file, _, line = record.source.rpartition(":")
    return file if file and line.isdigit() else record.source


def _line_of(record: TaskRecord) -> int | None:
    _, _, line = record.source.rpartition(":")
    return int(line) if line.isdigit() else None
