"""The contact sheet's pictures of each video: keyframes near its start, middle and
end, kept as one small JPEG strip (``videos/.frames/<name>.jpg``) taken when the video
is downloaded, so a sheet reads small files instead of opening videos.

Apart from the rest of a video's sidecars so that a process drawing sheet pages imports
only this, Pillow and PyAV (~0.1 s), not the whole run (~0.4 s, on every core).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import av
from PIL import Image

log = logging.getLogger(__name__)

POSTER_SUFFIX = ".jpg"
POSTER_QUALITY = 85
FRAMES_DIR = ".frames"  # videos/.frames/<name>.jpg: each video's frames for the contact sheet
FRAMES_AT = (0.0, 0.5, 1.0)  # start, middle and end
FRAME_PX = 128


def frames_of(video: Path) -> list[Image.Image | None]:
    """The contact sheet's pictures of ``video``: keyframes near the start, middle and
    end (:data:`FRAMES_AT`), each at most :data:`FRAME_PX` on a side; None where none
    could be decoded (a damaged video still gets a tile).

    They are kept in ``videos/.frames/<name>.jpg`` (one strip), written with the
    poster when the video is downloaded, so a sheet of 500 videos reads 500 small JPEGs
    instead of opening 500 videos (an opening of a 1080p file decodes its first frame:
    ~17 ms, and each keyframe ~10-20 ms more). A strip older than its video, or none,
    is made again here.

    Only keyframes are decoded: a seek lands on the keyframe before each moment, and
    that frame is the picture (an encoder puts one every second or two, so "the end" of
    a 10 s video may be its 8th second). Decoding forward to the exact frame costs about
    four times as much at 1080p."""
    cached = _read_frames(video)
    if cached is not None:
        return cached
    try:
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            found = keyframes(container, stream, FRAMES_AT)
    except (av.FFmpegError, OSError, IndexError, ValueError):
        return [None] * len(FRAMES_AT)
    write_frames(video, found)
    return found


def keyframes(
    container: av.container.InputContainer, stream: av.VideoStream, fractions: Sequence[float]
) -> list[Image.Image | None]:
    stream.codec_context.skip_frame = "NONKEY"
    length = float(container.duration or 0) / av.time_base
    assert stream.time_base is not None
    found: list[Image.Image | None] = []
    for fraction in fractions:
        container.seek(int(fraction * length / stream.time_base), stream=stream)
        frame = next(container.decode(stream), None)
        if frame is None:
            found.append(None)
            continue
        scale = FRAME_PX / max(frame.width, frame.height)
        small = frame.reformat(
            width=max(2, round(frame.width * scale)),
            height=max(2, round(frame.height * scale)),
            format="rgb24",  # FFmpeg scales it down: no full-size Pillow image is made
        )
        found.append(small.to_image())  # type: ignore[no-untyped-call]
    return found


def small_frame(picture: Image.Image) -> Image.Image:
    small = picture.convert("RGB")
    small.thumbnail((FRAME_PX, FRAME_PX))
    return small


def _frames_file(video: Path) -> Path:
    return video.parent / FRAMES_DIR / (video.stem + POSTER_SUFFIX)


def write_frames(video: Path, frames: list[Image.Image | None]) -> None:
    """The frames side by side in one JPEG (the first one's size; none missing)."""
    pictures = [frame for frame in frames if frame is not None]
    if len(pictures) < len(frames):
        return  # made again next time: a strip never stands for a frame it lacks
    width, height = pictures[0].size
    strip = Image.new("RGB", (width * len(pictures), height))
    for index, picture in enumerate(pictures):
        strip.paste(picture.resize((width, height)), (index * width, 0))
    path = _frames_file(video)
    partial = path.with_name(path.name + ".part")
    try:
        path.parent.mkdir(exist_ok=True)
        strip.save(partial, "JPEG", quality=POSTER_QUALITY)
        os.replace(partial, path)
    except OSError as exc:
        log.info("%s: frames not kept (%s)", video.name, exc)


def _read_frames(video: Path) -> list[Image.Image | None] | None:
    path = _frames_file(video)
    try:
        if path.stat().st_mtime < video.stat().st_mtime:
            return None  # the video was fetched again since
        with Image.open(path) as strip:
            strip.load()
    except (OSError, ValueError):
        return None
    width = strip.width // len(FRAMES_AT)
    return [
        strip.crop((index * width, 0, (index + 1) * width, strip.height))
        for index in range(len(FRAMES_AT))
    ]
