"""A chain link's first frame: the exact last frame of its parent's video.

Decoded with PyAV from the last keyframe on (a seek, then every frame to the end; the
frame shown last is the one with the greatest timestamp, B-frames or not), saved as a
lossless PNG in the run folder's ``images/`` named by the video's content, then checked
like any first frame (``jobs.pictures``): a PNG past the API's size is made a JPEG the
way a photo would be. Blocking: the engine runs it on a thread.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import av
from PIL import Image

from jobs.picture_files import convert, open_picture
from jobs.pictures import PictureSettings, converted_digest, plan_conversion
from runner.core.atomic import write_bytes_atomically
from runner.media.picture_pool import IMAGES_DIR, pictures_json


def last_frame(video: Path) -> Image.Image:
    """The last frame ``video`` shows, full size. Raises ``av.FFmpegError``,
    ``OSError`` or ``ValueError`` (no video stream, no frame) for a video without one."""
    with av.open(str(video)) as container:
        stream = container.streams.video[0]  # PyAV's slice threads: frame threads were
        assert stream.time_base is not None  # slower for these 48 frames (175 vs 141 ms)
        end = (container.duration or 0) / av.time_base
        container.seek(int(end / stream.time_base), stream=stream, backward=True)
        shown = _last_shown(container, stream)
        if shown is None:  # a seek past every keyframe: decode from the start
            container.seek(0, stream=stream)
            shown = _last_shown(container, stream)
    if shown is None:
        raise ValueError(f"{video.name} has no frame to continue from")
    picture: Image.Image = shown.to_image()  # type: ignore[no-untyped-call]
    return picture


def _last_shown(
    container: av.container.InputContainer, stream: av.VideoStream
) -> av.VideoFrame | None:
    last = None
    for frame in container.decode(stream):
        if last is None or (frame.pts or 0) >= (last.pts or 0):
            last = frame
    return last


@dataclass(frozen=True)
class LinkFrame:
    """What a link sends as its first frame, and what it was made from."""

    pictures: str  # the ledger's pictures column for the link (runner.media.picture_pool)
    video_sha256: str  # the parent's video: a parent made again means a new link


def make_link_frame(run_dir: Path, video: Path) -> LinkFrame:
    """The last frame of ``video`` as a link's first frame, written into ``images/``
    (once per video content) and checked; raises ``ValueError`` with why it cannot be
    one, or the decoder's error."""
    data = video.read_bytes()
    video_sha = hashlib.sha256(data).hexdigest()
    png = run_dir / IMAGES_DIR / f"last-{video_sha[:32]}.png"
    if not png.is_file():
        png.parent.mkdir(parents=True, exist_ok=True)
        frame = last_frame(video)
        partial = png.with_name(png.name + ".part")
        frame.save(partial, "PNG", compress_level=1)  # lossless; level 1: 5x quicker than 6
        partial.replace(png)
    picture = open_picture(png)
    if picture.problem or picture.facts is None:
        raise ValueError(f"its last frame is not a picture the API takes: {picture.problem}")
    conversion = plan_conversion(picture.facts, PictureSettings())
    if conversion.problem:
        raise ValueError(f"its last frame cannot be a first frame: {conversion.problem}")
    name = f"{IMAGES_DIR}/{png.name}"
    if not conversion.as_is:  # past the API's size: made a JPEG as a photo would be
        digest = converted_digest(picture.sha256, conversion)
        name = f"{IMAGES_DIR}/{digest[:32]}{conversion.suffix}"
        if not (run_dir / name).is_file():
            write_bytes_atomically(run_dir / name, convert(png.read_bytes(), conversion))
    kept = pictures_json({"image": (name, conversion)}, {})
    assert kept is not None
    return LinkFrame(kept, video_sha)
