"""Is a downloaded MP4 whole, and as long as asked? A walk of its boxes, in pure Python.

An MP4 is a sequence of top-level boxes, each a 4-byte big-endian size and a 4-byte
type (size 1: a 64-bit size follows; size 0: to the end of the file). A whole file
starts with ``ftyp``, holds a ``moov`` and an ``mdat``, and its declared sizes add up
exactly to its length. That catches every cut, wherever it falls: in ``moov`` or in
``mdat``, in a "faststart" file (``moov`` first) or one with ``moov`` at the end. A
decoder does not: PyAV opens a faststart file cut in half and reports the full
duration (``shared/videos.md`` measured it), so this walk, not a probe, decides.

Reading costs a few header reads plus ``moov`` itself (kilobytes: the sample tables),
microseconds a file; nothing is decoded. The duration comes from ``mvhd``; a video
track is a ``trak`` whose ``mdia/hdlr`` handler is ``vide``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# A duration this far from what was asked is named (the API's clips are whole seconds).
DURATION_TOLERANCE_S = 0.5
_MAX_MOOV_BYTES = 64 << 20  # a moov larger than this is not a clip's: damaged
_CONTAINERS = {b"moov", b"trak", b"mdia"}


@dataclass(frozen=True)
class Mp4Check:
    """What the walk found. ``whole`` False: the file is cut or damaged (``problem``
    says how) and must be fetched again. ``whole`` with a ``problem``: kept, but not
    what was asked (a duration that differs)."""

    whole: bool
    duration_s: float | None = None
    problem: str | None = None


def check_mp4(path: Path, expected_s: float | None = None) -> Mp4Check:
    """Walk ``path``'s top-level boxes; compare its duration with ``expected_s``."""
    try:
        with path.open("rb") as handle:
            size = path.stat().st_size
            return _judge(_walk(handle, size), expected_s)
    except _Damaged as exc:
        return Mp4Check(False, problem=str(exc))


class _Damaged(Exception):
    pass


@dataclass
class _Found:
    boxes: list[bytes]
    duration_s: float | None
    has_video: bool


def _walk(handle: BinaryIO, size: int) -> _Found:
    if size < 8:
        raise _Damaged(f"not an MP4: {size} bytes")
    boxes: list[bytes] = []
    duration_s: float | None = None
    has_video = False
    at = 0
    while at < size:
        kind, box_size, header = _box_header(handle, at, size)
        if not boxes and kind != b"ftyp":
            raise _Damaged("not an MP4: it does not start with an ftyp box")
        end = at + box_size
        if end > size:
            raise _Damaged(
                f"cut short: its {kind.decode('latin-1')} box needs {end:,} bytes, "
                f"the file has {size:,}"
            )
        if kind == b"moov":
            if box_size > _MAX_MOOV_BYTES:
                raise _Damaged(f"damaged: a moov box of {box_size:,} bytes")
            handle.seek(at + header)
            body = handle.read(box_size - header)
            duration_s, has_video = _read_moov(body)
        boxes.append(kind)
        at = end
    return _Found(boxes, duration_s, has_video)


def _box_header(handle: BinaryIO, at: int, size: int) -> tuple[bytes, int, int]:
    """(type, size, header length) of the box at ``at``."""
    handle.seek(at)
    head = handle.read(16)
    if len(head) < 8:
        raise _Damaged(f"cut short: {size - at} stray byte(s) after the last box")
    box_size, kind = struct.unpack(">I4s", head[:8])
    if not _printable(kind):
        raise _Damaged(f"damaged: no box at byte {at:,} (type {kind!r})")
    if box_size == 1:
        if len(head) < 16:
            raise _Damaged("cut short inside a box header")
        return kind, struct.unpack(">Q", head[8:16])[0], 16
    if box_size == 0:  # to the end of the file
        return kind, size - at, 8
    if box_size < 8:
        raise _Damaged(f"damaged: a {kind.decode('latin-1')} box of {box_size} bytes")
    return kind, box_size, 8


def _printable(kind: bytes) -> bool:
    return all(32 <= b < 127 for b in kind)


def _read_moov(body: bytes) -> tuple[float | None, bool]:
    """The movie's duration (``mvhd``) and whether a track is a video (``hdlr`` vide)."""
    duration_s: float | None = None
    has_video = False
    for kind, payload in _children(body):
        if kind == b"mvhd":
            duration_s = _mvhd_seconds(payload)
        elif kind == b"trak" and _handler(payload) == b"vide":
            has_video = True
    return duration_s, has_video


def _children(body: bytes) -> list[tuple[bytes, bytes]]:
    """The boxes inside a container's payload; damaged nesting raises."""
    found = []
    at = 0
    while at + 8 <= len(body):
        box_size, kind = struct.unpack(">I4s", body[at : at + 8])
        header = 8
        if box_size == 1 and at + 16 <= len(body):
            box_size, header = struct.unpack(">Q", body[at + 8 : at + 16])[0], 16
        elif box_size == 0:
            box_size = len(body) - at
        if box_size < header or at + box_size > len(body):
            raise _Damaged(f"damaged: a {kind.decode('latin-1')} box inside moov is cut")
        found.append((kind, body[at + header : at + box_size]))
        at += box_size
    return found


def _handler(trak: bytes) -> bytes | None:
    for kind, payload in _children(trak):
        if kind == b"mdia":
            for inner, data in _children(payload):
                if inner == b"hdlr" and len(data) >= 12:
                    return data[8:12]  # version/flags (4), pre_defined (4), handler type
    return None


def _mvhd_seconds(payload: bytes) -> float | None:
    """``mvhd`` version 0: 32-bit times; version 1: 64-bit creation/modification/duration."""
    if not payload:
        return None
    if payload[0] == 1 and len(payload) >= 32:
        timescale, duration = struct.unpack(">IQ", payload[20:32])
    elif len(payload) >= 20:
        timescale, duration = struct.unpack(">II", payload[12:20])
    else:
        return None
    return duration / timescale if timescale else None


def _judge(found: _Found, expected_s: float | None) -> Mp4Check:
    missing = [b.decode() for b in (b"moov", b"mdat") if b not in found.boxes]
    if missing:
        return Mp4Check(False, problem=f"damaged: no {' or '.join(missing)} box")
    if not found.has_video:
        return Mp4Check(False, found.duration_s, "damaged: no video track")
    if found.duration_s is None:
        return Mp4Check(False, problem="damaged: no duration in its mvhd box")
    seconds = round(found.duration_s, 3)
    if expected_s is not None and abs(seconds - expected_s) > DURATION_TOLERANCE_S:
        return Mp4Check(True, seconds, f"lasts {seconds:g}s, {expected_s:g}s was asked")
    return Mp4Check(True, seconds)
