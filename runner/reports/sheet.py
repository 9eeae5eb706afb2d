"""The night at a glance: ``contact-sheet.jpg`` in the run folder, one tile per task.

A tile shows the task's source image, its video at the start, middle and end, and its
key, status, model and measured length; a task without a video is a labelled tile with
the reason. With several models the sheet follows the page's comparison view: one line
per input, one column per model. Past :data:`TILES_PER_PAGE` tiles it goes on in
``contact-sheet-2.jpg``, ``-3``, ... so no page grows past what a viewer opens quickly.

Nothing common does "one tile per task of a batch" (vcsi and ffmpeg's ``tile`` filter
sheet one video), so Pillow draws it. Each video's three frames are taken when it is
downloaded, beside its poster (``runner.media.sidecars.frames_of``): the sheet reads small
JPEGs, and decodes only a video whose frames are missing or older than it.

Labels are drawn with Pillow's own font, which has Latin letters but no accents, CJK or
emoji: the text is folded to ASCII (``café`` -> ``cafe``) and what cannot be folded
becomes ``?``, so no label shows a box for a missing glyph. Prompts are left out of the
picture (the HTML page has them); keys and reasons are kept.
"""

from __future__ import annotations

import functools
import io
import os
import re
import unicodedata
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

from jobs import request_from_json
from jobs.images import is_url
from runner.core.atomic import write_bytes_atomically
from runner.core.pool import map_on_every_core
from runner.core.records import TaskRecord, TaskStatus
from runner.media.picture_pool import first_frame_sent
from runner.media.sidecars import FRAME_PX, FRAMES_AT, frames_of
from runner.reports.summary import no_video_reason

SHEET_NAME = "contact-sheet.jpg"
JPEG_QUALITY = 88  # 4:4:4: labels stay crisp
TILES_PER_PAGE = 60
PAGES_ON_EVERY_CORE = 4  # from this many pages, they are drawn on every core
CELL = FRAME_PX  # each picture is letterboxed into a CELL x CELL square
GAP = 4
MARGIN = 12
LINE_PX = 16
LABEL_LINES = 2
TILES_PER_LINE = 3  # with one model
BACKGROUND = (24, 24, 28)
CELL_BACKGROUND = (40, 40, 46)
TEXT = (230, 230, 230)
DIM_TEXT = (160, 160, 170)
STATUS_COLOURS = {
    TaskStatus.SUCCEEDED: (110, 200, 120),
    TaskStatus.FAILED: (235, 100, 90),
    TaskStatus.UNKNOWN: (235, 180, 80),
    TaskStatus.EXPIRED: (235, 180, 80),
    TaskStatus.STALLED: (235, 180, 80),
    TaskStatus.LOST: (235, 180, 80),
}


@dataclass(frozen=True)
class Tile:
    """What one task's tile says and shows."""

    task_key: str
    status: TaskStatus
    model: str
    input_key: tuple[str, ...]  # the same input (row, image, prompt, length) for every model
    image: str  # the source image ("" for text to video)
    video: Path | None
    label: str  # status, model and length, or why there is no video
    problem: str | None  # a failure's reason, or the video's problem


def sheet_pages(run_dir: Path) -> list[Path]:
    """The sheet's pages now in the folder, in order."""
    extra = sorted(run_dir.glob("contact-sheet-*.jpg"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    first = run_dir / SHEET_NAME
    return ([first] if first.is_file() else []) + extra


def write_contact_sheet(records: Sequence[TaskRecord], run_dir: Path, title: str) -> list[Path]:
    """Draw every page of the sheet into ``run_dir``; pages left from a bigger sheet
    are removed, so the folder never shows a stale page."""
    tiles = [tile_of(record, run_dir) for record in records]
    models = sorted({tile.model for tile in tiles})
    lines = lay_out(tiles, models)
    per_page = max(1, TILES_PER_PAGE // max(len(models), TILES_PER_LINE))
    chunks = [lines[i : i + per_page] for i in range(0, len(lines), per_page)] or [[]]
    jobs = [
        _Page(
            chunk,
            models,
            f"{title}  -  {len(tiles)} task(s)  -  page {number} of {len(chunks)}",
            run_dir / (SHEET_NAME if number == 1 else f"contact-sheet-{number}.jpg"),
        )
        for number, chunk in enumerate(chunks, start=1)
    ]
    # Drawing and encoding a page is CPU work: pages go to every core when there are a
    # few (each worker holds one page's pictures at a time: 100,000 tasks' would not fit).
    pages = map_on_every_core(_write_page, jobs, pool_from=PAGES_ON_EVERY_CORE)
    for stale in [*sheet_pages(run_dir)[len(pages) :], *run_dir.glob("contact-sheet*.png")]:
        stale.unlink(missing_ok=True)  # and an older kling-batch's PNG pages
    return pages


@dataclass(frozen=True)
class _Page:
    lines: list[list[Tile | None]]
    models: list[str]
    heading: str
    path: Path


def _write_page(page: _Page) -> Path:
    shown = [tile for line in page.lines for tile in line if tile is not None]
    frames, thumbs = _all_frames(shown), _source_thumbnails(shown)
    drawn = _draw_page(page.lines, page.models, frames, thumbs, page.heading)
    write_bytes_atomically(page.path, _jpeg(drawn))
    return page.path


def drawable(text: str) -> str:
    """``text`` as the built-in font draws it: accents folded away, the rest ``?``."""
    folded = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return re.sub(r"[^\x20-\x7e]+", "?", " ".join(folded.split()))


def tile_of(record: TaskRecord, run_dir: Path) -> Tile:
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
        status=record.status,
        model=request.model.name,
        input_key=(record.row_id, record.image, str(request.get("prompt")), str(duration)),
        image=first_frame_sent(record, run_dir),  # as sent (record.image is as typed)
        video=video,
        label=label,
        problem=problem,
    )


def lay_out(tiles: list[Tile], models: list[str]) -> list[list[Tile | None]]:
    """One model: tiles in lines of :data:`TILES_PER_LINE`. Several: one line per input,
    its tiles in the models' order (None where a model was not asked for it)."""
    if len(models) < 2:
        return [list(tiles[i : i + TILES_PER_LINE]) for i in range(0, len(tiles), TILES_PER_LINE)]
    by_input: dict[tuple[str, ...], dict[str, Tile]] = {}
    for tile in tiles:
        by_input.setdefault(tile.input_key, {}).setdefault(tile.model, tile)
    return [[by_model.get(model) for model in models] for by_model in by_input.values()]


def _all_frames(tiles: list[Tile]) -> dict[str, list[Image.Image | None]]:
    videos = {tile.task_key: tile.video for tile in tiles if tile.video is not None}
    workers = min(len(videos), os.cpu_count() or 1) or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        frames = pool.map(frames_of, videos.values())
        return dict(zip(videos, frames, strict=True))


def _source_thumbnails(tiles: list[Tile]) -> dict[str, Image.Image | None]:
    """Each local source image once, shrunk (JPEG's draft mode decodes it small)."""
    thumbs: dict[str, Image.Image | None] = {}
    for tile in tiles:
        if tile.image and tile.image not in thumbs:
            thumbs[tile.image] = None if is_url(tile.image) else small_picture(Path(tile.image))
    return thumbs


def small_picture(path: Path, size: int = CELL) -> Image.Image | None:
    """A local picture at most ``size`` on a side, turned as its EXIF says (JPEG's
    draft mode decodes it small); None if it cannot be read (moved since the run)."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (size, size))
            picture = ImageOps.exif_transpose(image).convert("RGB")
            picture.thumbnail((size, size))
            return picture
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _paste_source(
    page: Image.Image,
    draw: ImageDraw.ImageDraw,
    thumbs: dict[str, Image.Image | None],
    image: str,
    at: tuple[int, int],
) -> None:
    """A task's source image, or what stands in its place."""
    if not image:
        missing = "text to video"
    else:
        missing = "image by URL" if is_url(image) else "image not found"
    _paste(page, draw, thumbs.get(image), at, missing)


def _draw_page(
    lines: list[list[Tile | None]],
    models: list[str],
    frames: dict[str, list[Image.Image | None]],
    thumbs: dict[str, Image.Image | None],
    heading: str,
) -> Image.Image:
    several = len(models) >= 2
    tile_w = (len(FRAMES_AT) + (0 if several else 1)) * (CELL + GAP)
    tile_h = CELL + GAP + LABEL_LINES * LINE_PX
    columns = len(models) if several else TILES_PER_LINE
    source_w = CELL + GAP if several else 0
    width = 2 * MARGIN + source_w + columns * (tile_w + GAP)
    top = MARGIN + 2 * LINE_PX if several else MARGIN + LINE_PX + GAP
    height = top + len(lines) * (tile_h + GAP) + MARGIN
    page = Image.new("RGB", (width, max(height, top + MARGIN)), BACKGROUND)
    draw = ImageDraw.Draw(page)
    font = _font()
    draw.text((MARGIN, MARGIN), _fit(drawable(heading), width - 2 * MARGIN, font), TEXT, font)
    if several:
        for column, model in enumerate(models):
            x = MARGIN + source_w + column * (tile_w + GAP)
            draw.text((x, MARGIN + LINE_PX), _fit(drawable(model), tile_w, font), DIM_TEXT, font)
    for number, line in enumerate(lines):
        y = top + number * (tile_h + GAP)
        x = MARGIN
        if several:
            first = next(tile for tile in line if tile is not None)
            _paste_source(page, draw, thumbs, first.image, (x, y))
            row = _fit(drawable(f"row {first.input_key[0]}"), CELL, font)
            draw.text((x, y + CELL + GAP), row, TEXT, font)  # the input's row, once
            x += source_w
        for tile in line:
            if tile is not None:
                _draw_tile(page, draw, font, tile, (x, y), frames, None if several else thumbs)
            else:
                draw.text((x, y + CELL // 2), "not asked for", DIM_TEXT, font)
            x += tile_w + GAP
    return page


def _draw_tile(
    page: Image.Image,
    draw: ImageDraw.ImageDraw,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    tile: Tile,
    at: tuple[int, int],
    frames: dict[str, list[Image.Image | None]],
    thumbs: dict[str, Image.Image | None] | None,
) -> None:
    x, y = at
    width = len(FRAMES_AT) * (CELL + GAP) - GAP
    if thumbs is not None:  # one model: the source image opens the tile
        _paste_source(page, draw, thumbs, tile.image, (x, y))
        x += CELL + GAP
    pictures = frames.get(tile.task_key)
    if pictures is None:  # no video: the reason fills the frames' place
        draw.rectangle((x, y, x + width - 1, y + CELL - 1), CELL_BACKGROUND)
        _wrapped(draw, font, tile.problem or "", (x + GAP, y + GAP), width - 2 * GAP)
    else:
        for index, picture in enumerate(pictures):
            _paste(page, draw, picture, (x + index * (CELL + GAP), y), "no frame")
    full = width + (CELL + GAP if thumbs is not None else 0)
    label_y = y + CELL + GAP
    left = at[0]
    draw.text((left, label_y), _fit(drawable(tile.task_key), full, font), TEXT, font)
    colour = STATUS_COLOURS.get(tile.status, DIM_TEXT)
    second = (
        tile.label if pictures is None or not tile.problem else f"{tile.label} - {tile.problem}"
    )
    draw.text((left, label_y + LINE_PX), _fit(drawable(second), full, font), colour, font)


def _paste(
    page: Image.Image,
    draw: ImageDraw.ImageDraw,
    picture: Image.Image | None,
    at: tuple[int, int],
    missing: str,
) -> None:
    x, y = at
    draw.rectangle((x, y, x + CELL - 1, y + CELL - 1), CELL_BACKGROUND)
    if picture is None:
        draw.text((x + GAP, y + CELL // 2 - LINE_PX // 2), missing, DIM_TEXT, _font())
        return
    page.paste(picture, (x + (CELL - picture.width) // 2, y + (CELL - picture.height) // 2))


def _wrapped(
    draw: ImageDraw.ImageDraw,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    text: str,
    at: tuple[int, int],
    width: int,
) -> None:
    """``text`` in as many lines as fit in a cell's height, words kept whole."""
    words, lines, line = drawable(text).split(), [], ""
    for word in words:
        candidate = f"{line} {word}".strip()
        if line and font.getlength(candidate) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    lines.append(line)
    for number, text_line in enumerate(lines[: (CELL - 2 * GAP) // LINE_PX]):
        draw.text((at[0], at[1] + number * LINE_PX), _fit(text_line, width, font), TEXT, font)


def _fit(text: str, width: int, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> str:
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "...") > width:
        text = text[:-1]
    return text + "..."


@functools.cache
def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=12)


def _jpeg(page: Image.Image) -> bytes:
    """A page of video frames is a photograph: JPEG encodes it in a quarter of the
    time zlib's quickest PNG level takes (29 against 113 ms a page, 2,000-task bench)
    and the seventh of the default level's, at about the same size."""
    out = io.BytesIO()
    page.save(out, "JPEG", quality=JPEG_QUALITY, subsampling=0)
    return out.getvalue()
