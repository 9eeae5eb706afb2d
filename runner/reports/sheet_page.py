"""One page of the contact sheet, drawn and written: each task's tile (its source
image, its video's frames at the start, middle and end, two lines of label), as Pillow
draws it. ``runner.reports.sheet`` decides what goes on which page.

A page is drawn in a worker process when there are several (drawing and encoding is
CPU work): this module imports only Pillow, PyAV's frames and the records, so a worker
starts in ~0.1 s instead of the ~0.4 s the whole run's modules take.

Labels are drawn with Pillow's own bitmap font (its FreeType default takes twenty times
as long a label: 0.41 against 0.02 ms, a third of a page's time), which has printable
ASCII and nothing else: the text is folded to ASCII (``café`` -> ``cafe``) and what
cannot be folded becomes ``?``, so no label shows a box for a missing glyph. Prompts
are left out of the picture (the HTML page has them); keys and reasons are kept.
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from jobs.images import is_url
from runner.core.atomic import write_bytes_atomically
from runner.core.records import TaskStatus
from runner.media.frames import FRAME_PX, FRAMES_AT, frames_of
from runner.media.thumbs import source_thumbnail

DRAWING_VERSION = 2  # raise when a page is drawn differently: every page is drawn again
JPEG_QUALITY = 88
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
VERDICT_COLOURS = {"kept": (60, 200, 90), "rejected": (235, 70, 60)}
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
    changed_at: float  # the ledger row's last change: a tile shows nothing older
    finished: bool  # nothing about it can change in this run (a video still to fetch can)
    status: TaskStatus
    model: str
    input_key: tuple[str, ...]  # the same input (row, image, prompt, length) for every model
    image: str  # the source image ("" for text to video)
    video: Path | None
    label: str  # status, model and length, or why there is no video
    problem: str | None  # a failure's reason, or the video's problem
    verdict: str | None = None  # kept or rejected by a person (kling-batch review)
    chain: str | None = None  # the chain it is a link of: a chain starts a line


@dataclass(frozen=True)
class Page:
    """One page to draw: its lines of tiles (None where a model was not asked for an
    input), the models' columns, its heading and its file."""

    lines: list[list[Tile | None]]
    models: list[str]
    heading: str
    path: Path

    @property
    def tiles(self) -> list[Tile]:
        return [tile for line in self.lines for tile in line if tile is not None]

    @property
    def finished(self) -> bool:
        return all(tile.finished for tile in self.tiles)

    @property
    def fingerprint(self) -> str:
        """What the page shows, in 32 hex digits: drawn from the same, it is the same."""
        shown = repr((DRAWING_VERSION, self.heading, self.models, self.lines))
        return hashlib.sha256(shown.encode()).hexdigest()[:32]


def write_page(page: Page) -> Path:
    """Draw ``page`` and write it (a JPEG, atomically); its path."""
    shown = page.tiles
    frames, thumbs = _all_frames(shown), _source_thumbnails(shown, page.path.parent)
    drawn = _draw_page(page.lines, page.models, frames, thumbs, page.heading)
    write_bytes_atomically(page.path, _jpeg(drawn))
    return page.path


def drawable(text: str) -> str:
    """``text`` as the built-in font draws it: accents folded away, the rest ``?``."""
    folded = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return re.sub(r"[^\x20-\x7e]+", "?", " ".join(folded.split()))


def _all_frames(tiles: list[Tile]) -> dict[str, list[Image.Image | None]]:
    """Each video's frames strip, one after the other: a strip is a 0.3 ms read, and
    the pages are already spread over the cores."""
    return {tile.task_key: frames_of(tile.video) for tile in tiles if tile.video is not None}


def _source_thumbnails(tiles: list[Tile], run_dir: Path) -> dict[str, Image.Image | None]:
    """Each source image's kept thumbnail, once (made now if the night did not)."""
    thumbs: dict[str, Image.Image | None] = {}
    for tile in tiles:
        if tile.image and tile.image not in thumbs:
            thumbs[tile.image] = _opened(source_thumbnail(run_dir, tile.image))
    return thumbs


def _opened(path: Path | None) -> Image.Image | None:
    if path is None:
        return None
    try:
        with Image.open(path) as picture:
            return picture.convert("RGB")
    except (OSError, ValueError):
        return None  # removed or damaged since: the tile says "image not found"


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
    first = tile.task_key
    if tile.verdict:  # a band above the tile and the word: seen from across the room
        colour = VERDICT_COLOURS.get(tile.verdict, TEXT)
        draw.rectangle((left, y - GAP, left + full - 1, y - 2), colour)
        first = f"{tile.verdict.upper()}  {first}"
    draw.text((left, label_y), _fit(drawable(first), full, font), TEXT, font)
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
    return ImageFont.load_default_imagefont()


def _jpeg(page: Image.Image) -> bytes:
    """A page of video frames is a photograph: JPEG encodes it in a seventh of the time
    zlib's quickest PNG level takes (16 against 113 ms a page of 60 tiles) at about the
    same size. Colour at half resolution (4:2:0) takes 16 ms where full takes 27; the
    bitmap font's one-pixel strokes stay legible in it."""
    out = io.BytesIO()
    page.save(out, "JPEG", quality=JPEG_QUALITY, subsampling=2)
    return out.getvalue()
