"""What a downloaded video is, read from its own first bytes, and whether a GIF is whole.

Task Result says what it made (``video_type``: "mp4" in every example). A result that is
a GIF is kept as a GIF and checked as one (every frame decodes, the trailer is there),
not walked as an MP4, found "damaged" and fetched again and again. An MP4 is checked by
``runner.media.mp4``; anything else is kept as it came, its problem saying it was not checked.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from runner.media.mp4 import DURATION_TOLERANCE_S, Mp4Check, check_mp4

SUFFIXES = {"mp4": ".mp4", "gif": ".gif", "webm": ".webm"}
_GIF_TRAILER = b";"


def sniff(path: Path) -> str:
    """``mp4``, ``gif`` or ``webm`` by the file's first bytes; ``mp4`` when unsure (the
    box walk then says what is wrong with it)."""
    with path.open("rb") as handle:
        head = handle.read(12)
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"\x1aE\xdf\xa3"):
        return "webm"
    return "mp4"


def check_video(path: Path, kind: str, expected_s: float | None = None) -> Mp4Check:
    """The check a file of this kind gets (see the module's docstring)."""
    if kind == "mp4":
        return check_mp4(path, expected_s)
    if kind == "gif":
        return check_gif(path, expected_s)
    return Mp4Check(True, problem=f"a {kind} file: kept as it came, not checked")


def check_gif(path: Path, expected_s: float | None = None) -> Mp4Check:
    """Every frame decodes and the file ends with the GIF trailer; its duration is the
    sum of its frames' delays."""
    try:
        with path.open("rb") as handle:
            handle.seek(-1, 2)
            if handle.read(1) != _GIF_TRAILER:
                return Mp4Check(False, problem="cut short: the GIF has no trailer")
        with Image.open(path) as gif:
            duration_ms = 0
            for frame in range(getattr(gif, "n_frames", 1)):
                gif.seek(frame)
                gif.load()
                duration_ms += int(gif.info.get("duration", 0))
    except (OSError, UnidentifiedImageError, ValueError, EOFError) as exc:
        return Mp4Check(False, problem=f"a damaged GIF: {exc}")
    duration = duration_ms / 1000 or None
    if expected_s and duration is not None and abs(duration - expected_s) > DURATION_TOLERANCE_S:
        return Mp4Check(True, duration, f"lasts {duration:g}s, {expected_s:g}s was asked")
    return Mp4Check(True, duration)
