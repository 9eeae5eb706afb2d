"""The night at a glance: ``contact-sheet.jpg`` in the run folder, one tile per task.

A tile shows the task's source image, its video at the start, middle and end, and its
key, status, model and measured length; a task without a video is a labelled tile with
the reason. With several models the sheet follows the page's comparison view: one line
per input, one column per model. Past :data:`TILES_PER_PAGE` tiles it goes on in
``contact-sheet-2.jpg``, ``-3``, ... so no page grows past what a viewer opens quickly.

Nothing common does "one tile per task of a batch" (vcsi and ffmpeg's ``tile`` filter
sheet one video), so Pillow draws it. Each video's three frames are taken when it is
downloaded, beside its poster (``runner.media.frames``): the sheet reads small
JPEGs, and decodes only a video whose frames are missing or older than it.

How a page is drawn is ``runner.reports.sheet_page``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from jobs import request_from_json
from runner.core.atomic import write_text_atomically
from runner.core.pool import map_on_every_core
from runner.core.records import FINAL, Review, TaskRecord, TaskStatus
from runner.media.picture_pool import first_frame_sent
from runner.reports.sheet_page import TILES_PER_LINE, Page, Tile, write_page
from runner.reports.summary import no_video_reason, same_input

SHEET_NAME = "contact-sheet.jpg"
TILES_PER_PAGE = 60
PAGES_ON_EVERY_CORE = 4  # from this many pages, they are drawn on every core
SUCCEEDED = TaskStatus.SUCCEEDED
DRAWN_FILE = ".contact-sheet.json"  # what each page was drawn from


def sheet_pages(run_dir: Path) -> list[Path]:
    """The sheet's pages now in the folder, in order."""
    extra = sorted(run_dir.glob("contact-sheet-*.jpg"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    first = run_dir / SHEET_NAME
    return ([first] if first.is_file() else []) + extra


@dataclass(frozen=True)
class SheetPage:
    """A page of the sheet as its index shows it: which tasks it holds, and how many of
    them have no video to look at (so a person opens those pages first)."""

    path: Path
    first_key: str
    last_key: str
    tasks: int
    not_succeeded: int


def write_contact_sheet(
    records: Sequence[TaskRecord],
    run_dir: Path,
    title: str,
    *,
    finished_only: bool = False,
    again: bool = False,
    one_core: bool = False,
    reviews: Mapping[str, Review] | None = None,
) -> list[SheetPage]:
    """Draw the sheet's pages into ``run_dir`` and return them all, in order.

    A page already drawn from what it would show now is kept, not drawn again: each
    page's fingerprint (every tile's task, status, label and ledger row time, and the
    heading) is kept in :data:`DRAWN_FILE`. So the night's end draws only the pages
    whose tasks ended after the night's last look (``runner.run.sheet_keeper`` draws the
    others while the night runs, with ``finished_only``: pages none of whose tasks can
    still change), and ``report`` run again draws none. ``again`` draws every page;
    ``one_core`` draws them in this process (the keeper's, beside a running night);
    ``reviews``: a person's judgements, shown on their tiles.
    Pages left from a bigger sheet are removed, so the folder never shows a stale page.
    """
    pages = plan_pages(records, run_dir, title, reviews or {})
    drawn = {} if again else _drawn(run_dir)
    todo = [
        page
        for page in pages
        if (drawn.get(page.path.name) != page.fingerprint or not page.path.is_file())
        and (page.finished or not finished_only)
    ]
    for page in todo:
        drawn.pop(page.path.name, None)  # forgotten first: a page half-written is redrawn
    # Drawing and encoding a page is CPU work: pages go to every core when there are a
    # few (each worker holds one page's pictures at a time: 100,000 tasks' would not fit).
    pool_from = len(todo) + 1 if one_core else PAGES_ON_EVERY_CORE
    map_on_every_core(write_page, todo, pool_from=pool_from)
    drawn.update({page.path.name: page.fingerprint for page in todo})
    if not finished_only:
        for stale in [*sheet_pages(run_dir)[len(pages) :], *run_dir.glob("contact-sheet*.png")]:
            stale.unlink(missing_ok=True)  # and an older kling-batch's PNG pages
            drawn.pop(stale.name, None)
    write_text_atomically(run_dir / DRAWN_FILE, json.dumps(drawn, indent=0, sort_keys=True))
    return [_indexed(page) for page in pages]


def _indexed(page: Page) -> SheetPage:
    tiles = page.tiles
    return SheetPage(
        page.path,
        tiles[0].task_key if tiles else "",
        tiles[-1].task_key if tiles else "",
        len(tiles),
        sum(1 for tile in tiles if tile.status != SUCCEEDED),
    )


def _lines(tiles: list[Tile]) -> list[list[Tile | None]]:
    lines: list[list[Tile | None]] = []
    line: list[Tile | None] = []
    chain: str | None = None
    for tile in tiles:
        if line and (len(line) == TILES_PER_LINE or tile.chain != chain):
            lines.append(line)
            line = []
        line.append(tile)
        chain = tile.chain
    if line:
        lines.append(line)
    return lines


def plan_pages(
    records: Sequence[TaskRecord],
    run_dir: Path,
    title: str,
    reviews: Mapping[str, Review] | None = None,
) -> list[Page]:
    """Every page of the sheet: which tiles go on it, its heading and its file."""
    reviews = reviews or {}
    tiles = [tile_of(record, run_dir, reviews.get(record.task_key)) for record in records]
    models = sorted({tile.model for tile in tiles})
    lines = lay_out(tiles, models)
    per_page = max(1, TILES_PER_PAGE // max(len(models), TILES_PER_LINE))
    chunks = [lines[i : i + per_page] for i in range(0, len(lines), per_page)] or [[]]
    return [
        Page(
            chunk,
            models,
            f"{title}  -  {len(tiles)} task(s)  -  page {number} of {len(chunks)}",
            run_dir / (SHEET_NAME if number == 1 else f"contact-sheet-{number}.jpg"),
        )
        for number, chunk in enumerate(chunks, start=1)
    ]


def _drawn(run_dir: Path) -> dict[str, str]:
    """Page name -> the fingerprint of what it was drawn from ({} when unknown)."""
    try:
        found = json.loads((run_dir / DRAWN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def tile_of(record: TaskRecord, run_dir: Path, review: Review | None = None) -> Tile:
    request = request_from_json(record.request_json)
    duration = request.get("duration")
    video = run_dir / record.video_path if record.video_path else None
    if video is not None and video.is_file():
        length = f"{record.video_s:.1f} s" if record.video_s is not None else f"{duration} s"
        label = f"{record.status} - {request.model.name} - {length}"
        problem = f"video {record.video_problem}" if record.video_problem else None
    else:
        video = None
        label = f"{record.status} - {request.model.name} - {duration} s asked"
        problem = record.error or no_video_reason(str(record.status))
    return Tile(
        task_key=record.task_key,
        changed_at=record.updated_at,
        finished=record.status in FINAL and not (record.status == SUCCEEDED and video is None),
        status=record.status,
        model=request.model.name,
        input_key=same_input(record.row_id, record.image, request.get("prompt"), duration),
        image=first_frame_sent(record, run_dir),  # as sent (record.image is as typed)
        video=video,
        label=label,
        problem=problem,
        verdict=str(review.verdict) if review and review.verdict else None,
        chain=record.chain,
    )


def lay_out(tiles: list[Tile], models: list[str]) -> list[list[Tile | None]]:
    """One model: tiles in lines of :data:`TILES_PER_LINE`, each chain starting a line
    of its own (its links read left to right). Several: one line per input, its tiles
    in the models' order (None where a model was not asked for it)."""
    if len(models) < 2:
        return _lines(tiles)
    by_input: dict[tuple[str, ...], dict[str, Tile]] = {}
    for tile in tiles:
        by_input.setdefault(tile.input_key, {}).setdefault(tile.model, tile)
    return [[by_model.get(model) for model in models] for by_model in by_input.values()]
