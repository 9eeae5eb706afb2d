"""``report.html``: a page a person looks at, drawn from the report's rows: every task a
card (its source picture, prompt, status, the video playing), a comparison view when a
run compares models, filters and search. The markup is the template's
(``runner/assets/report.html``, Jinja2, autoescaped); here is what goes in it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from runner.core.records import TaskRecord
from runner.media.picture_pool import first_frame_sent
from runner.media.thumbs import source_thumbnail
from runner.reports.chains_page import chains_view
from runner.reports.sheet import SheetPage
from runner.reports.summary import RunSummary, no_video_reason, same_input
from runner.reports.table import iso_time
from runner.reports.templates import PAGES


def _media(row: Mapping[str, Any]) -> dict[str, Any]:
    """A video as the template shows it: ``<video>`` with its poster, so a card shows a
    picture before the video loads (a GIF the API made is a picture: ``<img>``)."""
    video = row["video_path"]
    return {
        "video": quote(video) if video else None,
        "gif": bool(video) and str(video).endswith(".gif"),
        "poster": quote(row["poster_path"]) if row.get("poster_path") else None,
    }


def thumbnails(records: Sequence[TaskRecord], run_dir: Path) -> dict[str, str]:
    """task key -> its first frame's thumbnail as sent, a link relative to the page
    (local images only: the page must open without a network). Each kept thumbnail is
    looked up once however many tasks use it, and made only if the night did not."""
    by_image: dict[str, str | None] = {}
    thumbs: dict[str, str] = {}
    for record in records:
        image = first_frame_sent(record, run_dir)
        if image not in by_image:
            kept = source_thumbnail(run_dir, image)
            by_image[image] = quote(kept.relative_to(run_dir).as_posix()) if kept else None
        if thumb := by_image[image]:
            thumbs[record.task_key] = thumb
    return thumbs


SHEET_LINKS_INLINE = 12  # more contact-sheet pages than this get an index
CARDS_PER_TEMPLATE = 200  # cards parsed but not drawn: see the page's script


def render_html(
    frame: pd.DataFrame,
    summary: RunSummary,
    title: str,
    thumbs: dict[str, str],
    sheets: Sequence[SheetPage] = (),
    films: Mapping[str, str] | None = None,
) -> str:
    """A page a person looks at in the morning: the summary, then one card per task with
    its source image, settings, status, the video playing from its local file, and the
    reason for a failure; filter by status and search by text. No network needed.

    Every card is in the page, inert in ``<template>``s: the page's script shows the
    ones the filters let through as they scroll into view, so 20,000 cards open as fast
    as a hundred (their videos, pictures and layout cost nothing until then)."""
    rows = _rows(frame)
    buttons = [
        {"filter": s, "name": s, "count": n} for s, n in summary.counts.items()
    ] + [  # failures by cause: a moderated row is not a model down
        {"filter": f"failed:{c}", "name": f"failed: {c}", "count": n}
        for c, n in summary.failures_by_class.items()
    ]
    facts = [
        ("tasks", str(summary.total)),
        ("estimated cost", f"${summary.est_total_usd:,.2f}"),
        ("spent (estimate)", f"${summary.spent_usd:,.2f}"),
        (
            "generation p50 / p95",
            f"{_seconds(summary.generation_p50_s)} / {_seconds(summary.generation_p95_s)}",
        ),
        ("started", iso_time(summary.started_at) or "not yet"),
        ("finished", iso_time(summary.finished_at) or "not yet"),
        *([("video problems", str(summary.video_problems))] if summary.video_problems else []),
    ]
    counts = " · ".join(f"{n} {s}" for s, n in summary.counts.items())
    return PAGES.get_template("report.html").render(
        title=title,
        counts=counts or "no tasks",
        facts=facts,
        sheets=_sheet_links(sheets),
        compare=_comparison(rows, thumbs),
        chains=chains_view(rows, films or {}),
        total=summary.total,
        buttons=buttons,
        cards=[_card(row, thumbs.get(row["task_key"])) for row in rows],
        cards_per_template=CARDS_PER_TEMPLATE,
    )


def _sheet_links(sheets: Sequence[SheetPage]) -> dict[str, Any]:
    """Links to the contact sheet's pages (beside the page, so relative links); past
    :data:`SHEET_LINKS_INLINE` pages, an index instead: each page's first and last task
    and how many of its tasks have no video, so a person opens those pages first and
    need not look through hundreds."""
    links = [
        {
            "href": quote(page.path.name),
            "name": "contact sheet" if number == 1 else f"page {number}",
            "first_key": page.first_key,
            "last_key": page.last_key,
            "tasks": page.tasks,
            "not_succeeded": page.not_succeeded,
        }
        for number, page in enumerate(sheets, start=1)
    ]
    return {
        "links": links,
        "inline": bool(links) and len(links) <= SHEET_LINKS_INLINE,
        "attention": sum(1 for page in sheets if page.not_succeeded),
    }


def _comparison(rows: list[dict[str, Any]], thumbs: dict[str, str]) -> dict[str, Any] | None:
    """Models side by side, when a run has several: one line per input (image, prompt,
    settings), one column per model, each cell the video (or why there is none) with
    its generation time and estimated cost; buttons show one model's column at a time."""
    models = sorted({str(row["model"]) for row in rows})
    if len(models) < 2:
        return None
    lines: dict[tuple[str, ...], dict[str, dict[str, Any]]] = {}
    firsts: dict[tuple[str, ...], dict[str, Any]] = {}
    for row in rows:
        key = same_input(row["row_id"], row["image"], row["prompt"], row["duration"])
        lines.setdefault(key, {}).setdefault(str(row["model"]), row)
        firsts.setdefault(key, row)
    shown = []
    for key, by_model in lines.items():
        first = firsts[key]
        settings = f"{first['duration']} s" + (
            f" · {first['aspect_ratio']}" if first["aspect_ratio"] else ""
        )
        shown.append(
            {
                "thumb": thumbs.get(str(first["task_key"])),
                "prompt": str(first["prompt"]),
                "settings": settings,
                "cells": [_compare_cell(by_model.get(m), m) for m in models],
            }
        )
    return {"models": models, "lines": shown}


def _compare_cell(row: dict[str, Any] | None, model: str) -> dict[str, Any]:
    if row is None:
        return {"model": model, "none": True}
    timing = f"{row['generation_s']} s · " if row["generation_s"] is not None else ""
    return {
        "model": model,
        "none": False,
        "status": row["status"],
        "meta": f"{timing}${row['est_cost_usd']:.2f}",
        **_media(row),
    }


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return [{str(k): v for k, v in row.items()} for row in records]


def _card(row: dict[str, Any], thumb: str | None) -> dict[str, Any]:
    """What one task's card says (the template escapes every value)."""
    status = row["status"]
    settings = [
        str(row["model"]),
        f"{row['duration']} s",
        *([str(row["aspect_ratio"])] if row["aspect_ratio"] else []),
        *([] if row["sound"] is None else ["sound" if row["sound"] else "no sound"]),
        *([] if row["cfg_scale"] is None else [f"cfg {row['cfg_scale']}"]),
        *([row["settings"]] if row["settings"] else []),
    ]
    if row["voice_list"]:
        settings.append(f"voices {row['voice_list']}")
    if row["negative_prompt"]:
        settings.append(f"not: {row['negative_prompt']}")
    searchable = " ".join(
        str(row[c] or "")
        for c in ("task_key", "prompt", "negative_prompt", "error", "task_id", "row_id", "image")
    ).lower()
    return {
        "status": status,
        "cause": row["failure_class"] or "",
        "text": searchable,
        **_media(row),
        "no_video": no_video_reason(status),
        "key": row["task_key"],
        "thumb": thumb,
        "image": row["image"],
        "prompt": row["prompt"],
        "settings": " · ".join(settings),
        "error": row["error"],
        "video_problem": row["video_problem"] if row["video_path"] else None,  # kept, not as asked
        "task_id": row["task_id"] or "none",
        "attempts": row["attempts"],
        "cost": f"{row['est_cost_usd']:.2f}",
        "timing": f" · {row['generation_s']} s" if row["generation_s"] is not None else "",
    }


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"
