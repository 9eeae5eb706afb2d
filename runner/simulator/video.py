"""The simulator's videos: made from each task's own first frame, or a fixed sample.

By default every task's video is a real H.264 MP4 made from the image it was sent
(:func:`video_from_image`), as long as it asked: the demo shows the user's pictures
moving, and the runner's checks (``runner.media.mp4``) and posters meet real files. For speed
benchmarks, a tiny fixed sample (4.5 KB, 160x90) is served instead, its ``mvhd``
duration set to the task's own; padding for a given size (the big-videos benchmark)
goes in a ``free`` box, which players and the check skip.
"""

from __future__ import annotations

import functools
import io
import struct
from importlib import resources

from PIL import Image, ImageOps

_FREE_HEADER = 8


@functools.cache
def sample_video(duration_s: float, size_bytes: int = 0) -> bytes:
    """The sample, saying ``duration_s``, padded with a ``free`` box to ``size_bytes``."""
    data = bytearray(resources.files("runner").joinpath("assets/sample.mp4").read_bytes())
    _set_duration(data, duration_s)
    padding = size_bytes - len(data)
    if padding >= _FREE_HEADER:
        data += struct.pack(">I4s", padding, b"free") + bytes(padding - _FREE_HEADER)
    return bytes(data)


def cut_short(video: bytes) -> bytes:
    """What a dropped connection or a proxy's limit leaves: the first half."""
    return video[: len(video) // 2]


def _set_duration(data: bytearray, duration_s: float) -> None:
    at = data.index(b"mvhd") + 4  # the box's payload: version, flags, then the times
    if data[at] == 1:
        timescale = struct.unpack_from(">I", data, at + 20)[0]
        struct.pack_into(">Q", data, at + 24, round(duration_s * timescale))
    else:
        timescale = struct.unpack_from(">I", data, at + 12)[0]
        struct.pack_into(">I", data, at + 16, round(duration_s * timescale))


# The simulator's own videos: small, few frames a second, quick to make (shared/videos.md:
# a 5 s clip at 8 fps and 320 px is well under 150 ms).
VIDEO_WIDTH = 320
VIDEO_FPS = 8
PUSH_IN = 0.12  # the last frame shows the middle 1 / (1 + PUSH_IN) of the picture


def video_from_image(image: bytes | None, duration_s: float, width: int = VIDEO_WIDTH) -> bytes:
    """A real H.264 MP4 made from the submitted first frame: a slow push-in, as long as
    asked (moov at the end, as many encoders leave it). The user's own picture moves in
    the demo's gallery and contact sheet, and the runner's checks meet a real file.
    ``image`` None (a URL the simulator does not fetch, or text to video): a gradient."""
    import av  # the simulator's only use of PyAV; a CLI start does not pay for it

    still = _still(image, width)
    width, height = still.size[0] // 2 // 2 * 2, still.size[1] // 2 // 2 * 2
    frames = max(1, round(duration_s * VIDEO_FPS))
    out_buffer = io.BytesIO()
    with av.open(out_buffer, "w", format="mp4") as out:  # faststart needs a real file
        stream = out.add_stream("libx264", rate=VIDEO_FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # A keyframe a second, as real encoders place them every second or two (the
        # contact sheet's frames at the middle and end are keyframes).
        stream.options = {"preset": "ultrafast", "crf": "30", "g": str(VIDEO_FPS)}
        for index in range(frames):
            zoom = 1 + PUSH_IN * index / max(1, frames - 1)
            box_w, box_h = still.size[0] / zoom, still.size[1] / zoom
            left, top = (still.size[0] - box_w) / 2, (still.size[1] - box_h) / 2
            frame = still.resize(
                (width, height), Image.Resampling.BILINEAR, (left, top, left + box_w, top + box_h)
            )
            picture = av.VideoFrame.from_image(frame)  # type: ignore[no-untyped-call]
            out.mux(stream.encode(picture))
        out.mux(stream.encode())  # flush: without it the last frames are lost
    return out_buffer.getvalue()


def _still(image: bytes | None, width: int = VIDEO_WIDTH) -> Image.Image:
    """The picture at twice the video's width (each frame is cut from it)."""
    if image is not None:
        try:
            with Image.open(io.BytesIO(image)) as opened:
                picture = ImageOps.exif_transpose(opened).convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError):
            picture = None
        if picture is not None:
            scale = 2 * width / picture.width
            return picture.resize((2 * width, max(2, round(picture.height * scale))))
    gradient = Image.linear_gradient("L").resize((2 * width, 2 * width * 9 // 16))
    return Image.merge("RGB", (gradient, gradient.rotate(90), Image.new("L", gradient.size, 90)))


GIF_FPS = 4


def gif_from_image(image: bytes | None, duration_s: float) -> bytes:
    """The same push-in as an animated GIF (small, few frames): what an API that answers
    ``video_type: gif`` serves."""
    still = _still(image)
    width, height = still.size[0] // 4, still.size[1] // 4
    count = max(1, round(duration_s * GIF_FPS))
    frames = []
    for index in range(count):
        zoom = 1 + PUSH_IN * index / max(1, count - 1)
        box_w, box_h = still.size[0] / zoom, still.size[1] / zoom
        left, top = (still.size[0] - box_w) / 2, (still.size[1] - box_h) / 2
        box = (left, top, left + box_w, top + box_h)
        frames.append(still.resize((width, height), Image.Resampling.BILINEAR, box))
    out = io.BytesIO()
    frames[0].save(
        out, "GIF", save_all=True, append_images=frames[1:], duration=1000 // GIF_FPS, loop=0
    )
    return out.getvalue()
