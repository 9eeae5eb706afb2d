"""The simulator's videos: its tiny fixed sample, made to say the asked duration.

A real MP4 of 4.5 KB (2 s, 160x90 H.264) is served for every task, its ``mvhd``
duration set to the task's own, so the runner's check of a video (``runner.mp4``)
meets what Novita sends: a whole file as long as asked. Padding for a given size (the
big-videos benchmark) goes in a ``free`` box, which players and the check skip.
"""

from __future__ import annotations

import functools
import struct
from importlib import resources

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
