"""Clips joined into one film with PyAV: packets copied when the clips share their
codec parameters (no re-encoding: quick and lossless), decoded and encoded again when
they do not, or when a crossfade is asked for.

A chain's link starts on its parent's last frame, so a plain join shows that frame
twice: one frame, 1/24 s, not a visible pause, and every frame of every clip is kept, so
the film lasts exactly as long as its clips together. Encoded again, each clip's sound
is resampled and fitted to its picture. A crossfade blends the end of each clip into
the start of the next instead (the film is shorter by the overlaps; the sound, which a
crossfade would need mixed, is left out and said so).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Film:
    path: Path
    seconds: float
    reencoded: bool
    why: str  # how it was joined, said to the person
    notes: tuple[str, ...] = field(default_factory=tuple)


def stitch(
    clips: Sequence[Path],
    out: Path,
    *,
    crossfade_s: float = 0.0,
    tags: Mapping[str, str] | None = None,
) -> Film:
    """Join ``clips`` in order into ``out`` (written whole or not at all)."""
    if not clips:
        raise ValueError("no clip to join")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.part")
    differs = _differences(clips)
    try:
        if crossfade_s > 0 or differs:
            why = (
                f"re-encoded for a {crossfade_s:g} s crossfade"
                if crossfade_s > 0
                else f"re-encoded: the clips differ ({differs})"
            )
            seconds, notes = _reencode(clips, partial, crossfade_s, tags or {})
            film = Film(out, seconds, True, why, notes)
        else:
            seconds = _remux(clips, partial, tags or {})
            film = Film(out, seconds, False, "joined without re-encoding")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return film


def _signature(path: Path) -> tuple[object, ...]:
    """What must be equal for packets of two clips to play as one stream."""
    with av.open(str(path)) as container:
        parts: list[object] = []
        for video in container.streams.video:
            context = video.codec_context
            parts.append(("video", context.name, bytes(context.extradata or b"")))
            parts.append((context.width, context.height, context.pix_fmt))
        for audio in container.streams.audio:
            sound = audio.codec_context
            parts.append(("audio", sound.name, bytes(sound.extradata or b"")))
            parts.append((sound.sample_rate, sound.channels, sound.format.name))
        return tuple(parts)


def _differences(clips: Sequence[Path]) -> str:
    first = _signature(clips[0])
    for clip in clips[1:]:
        other = _signature(clip)
        if other != first:
            if len(other) != len(first):
                return f"{clip.name} has other streams (sound in some, not in others)"
            return f"{clip.name}'s codec parameters are not {clips[0].name}'s"
    return ""


def _remux(clips: Sequence[Path], out: Path, tags: Mapping[str, str]) -> float:
    """Packets copied, each clip's timestamps moved past the clips before it."""
    with av.open(str(out), "w", format="mp4", options={"movflags": "+faststart"}) as output:
        output.metadata.update(tags)
        outputs: dict[str, av.stream.Stream] = {}
        last_dts_s: dict[str, float] = {}  # each stream's last decoding time, so far
        offset_s = 0.0
        for clip in clips:
            with av.open(str(clip)) as source:
                streams = [s for s in source.streams if s.type in ("video", "audio")]
                for stream in streams:
                    if stream.type not in outputs:
                        outputs[stream.type] = output.add_stream_from_template(stream)
                ends: dict[str, float] = {}
                shifts: dict[str, int] = {}
                for packet in source.demux(*streams):
                    if packet.dts is None:
                        continue
                    kind, base = packet.stream.type, packet.time_base
                    assert base is not None and packet.pts is not None
                    if kind not in shifts:  # a clip's first packet of this stream
                        shifts[kind] = _shift(packet.dts, base, offset_s, last_dts_s.get(kind))
                    end = float((packet.pts + (packet.duration or 0)) * base)
                    ends[kind] = max(ends.get(kind, 0.0), end)
                    packet.pts += shifts[kind]
                    packet.dts += shifts[kind]
                    last_dts_s[kind] = float(packet.dts * base)
                    packet.stream = outputs[kind]
                    output.mux(packet)
                offset_s += ends.get("video", max(ends.values(), default=0.0))
    return offset_s


def _shift(first_dts: int, base: Fraction, offset_s: float, last_dts_s: float | None) -> int:
    """How far a clip's stream moves: to the clips before it; and past the stream's
    last packet, where a clip starts early (B-frames and a sound encoder's priming
    start before zero): a muxer takes only rising decoding times."""
    shift = round(offset_s / base)
    if last_dts_s is not None and (first_dts + shift) * base <= last_dts_s:
        shift = math.ceil(last_dts_s / base) + 1 - first_dts
    return shift


def _reencode(
    clips: Sequence[Path], out: Path, crossfade_s: float, tags: Mapping[str, str]
) -> tuple[float, tuple[str, ...]]:
    """Every frame decoded and encoded again (H.264) at the first clip's size and rate,
    each clip's sound fitted to its picture; with a crossfade, each joint's frames
    blended (and no sound)."""
    with av.open(str(clips[0])) as first:
        video = first.streams.video[0]
        width, height = video.codec_context.width, video.codec_context.height
        rate = video.average_rate or Fraction(24)
    overlap = round(crossfade_s * rate)
    notes = []
    sounding = any(_has_audio(c) for c in clips)
    if sounding and overlap:
        notes.append("the sound is left out: a crossfade would need it mixed")
    with av.open(str(out), "w", format="mp4", options={"movflags": "+faststart"}) as output:
        output.metadata.update(tags)
        pictures = _Pictures(output, width, height, rate)
        sound = _Sound(output) if sounding and not overlap else None
        last = len(clips) - 1
        for index, clip in enumerate(clips):
            if sound is not None and index > 0:
                sound.add(clips[index - 1], pictures.seconds)
            frames = _frames(clip, width, height)
            pictures.add(frames, blend_in=overlap if index else 0, hold=overlap * (index < last))
        pictures.close()
        if sound is not None:
            sound.add(clips[-1], pictures.seconds)
            sound.close()
    return pictures.seconds, tuple(notes)


class _Pictures:
    """A re-encoded film's picture: frames in order, the last ``hold`` of a clip held
    back to be blended with the next clip's first (a crossfade)."""

    def __init__(
        self, output: av.container.OutputContainer, width: int, height: int, rate: Fraction
    ):
        self.output, self.rate = output, rate
        self.stream = output.add_stream("libx264", rate=rate)
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        self.stream.options = {"crf": "18", "preset": "veryfast"}
        self.written = 0
        self.tail: list[Image.Image] = []  # the previous clip's last frames, held back

    @property
    def seconds(self) -> float:
        return float(self.written / self.rate)

    def add(self, frames: Iterator[Image.Image], *, blend_in: int, hold: int) -> None:
        if blend_in:
            for at, old in enumerate(self.tail):
                new = next(frames, None)
                if new is None:
                    break
                self.tail[at] = Image.blend(old, new, (at + 1) / (len(self.tail) + 1))
        for picture in self.tail:
            self._encode(picture)
        self.tail = []
        for picture in frames:
            if not hold:
                self._encode(picture)
                continue
            self.tail.append(picture)
            if len(self.tail) > hold:
                self._encode(self.tail.pop(0))

    def close(self) -> None:
        for picture in self.tail:
            self._encode(picture)
        self.output.mux(self.stream.encode())

    def _encode(self, picture: Image.Image) -> None:
        frame = av.VideoFrame.from_image(picture)  # type: ignore[no-untyped-call]
        frame.pts = self.written
        self.output.mux(self.stream.encode(frame))
        self.written += 1


SOUND_RATE = 48000


class _Sound:
    """A re-encoded film's sound: each clip's resampled to one format (AAC, stereo,
    48 kHz) and cut or padded with silence to its clip's picture, so that picture and
    sound stay together across every joint (a clip without sound is silence)."""

    def __init__(self, output: av.container.OutputContainer):
        self.output = output
        self.stream = output.add_stream("aac", rate=SOUND_RATE)
        self.stream.layout = "stereo"
        self.samples = 0

    def add(self, clip: Path, end_s: float) -> None:
        """``clip``'s sound, up to ``end_s`` of the film (its picture's end)."""
        end = round(end_s * SOUND_RATE)
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=SOUND_RATE)
        with av.open(str(clip)) as source:
            if source.streams.audio:
                for frame in source.decode(audio=0):
                    for made in resampler.resample(frame):
                        self._put(made, end)
                for made in resampler.resample(None):
                    self._put(made, end)
        while self.samples < end:  # silence to the picture's end
            count = min(1024, end - self.samples)
            quiet = np.zeros((2, count), dtype=np.float32)
            self._put(av.AudioFrame.from_ndarray(quiet, format="fltp", layout="stereo"), end)

    def close(self) -> None:
        self.output.mux(self.stream.encode(None))

    def _put(self, frame: av.AudioFrame, end: int) -> None:
        room = end - self.samples
        if room <= 0:
            return
        if frame.samples > room:
            kept = frame.to_ndarray()[:, :room]
            frame = av.AudioFrame.from_ndarray(kept, format="fltp", layout="stereo")
        frame.sample_rate = SOUND_RATE
        frame.pts, frame.time_base = self.samples, Fraction(1, SOUND_RATE)
        self.samples += frame.samples
        self.output.mux(self.stream.encode(frame))


def _frames(clip: Path, width: int, height: int) -> Iterator[Image.Image]:
    with av.open(str(clip)) as source:
        for frame in source.decode(video=0):
            if (frame.width, frame.height) != (width, height):
                frame = frame.reformat(width=width, height=height)
            yield frame.to_image()  # type: ignore[no-untyped-call]


def _has_audio(clip: Path) -> bool:
    with av.open(str(clip)) as container:
        return bool(container.streams.audio)
