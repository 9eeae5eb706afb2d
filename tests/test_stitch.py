"""Joining clips (``runner.media.stitch``): packets copied when the clips share their
codec parameters (picture and sound, timestamps moved on), encoded again when they do
not, always as long as the clips together (within a frame per joint)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from runner.media.stitch import stitch
from runner.run.films import film_seconds

FPS = 24


def clip(
    path: Path, seconds: float, width: int = 320, colour=(200, 80, 40), sound: bool = True
) -> Path:
    """A real H.264 clip (and AAC sound): a plain colour, a tone."""
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = width, width * 9 // 16 // 2 * 2, "yuv420p"
        audio = out.add_stream("aac", rate=48000) if sound else None
        for _ in range(round(seconds * FPS)):
            picture = Image.new("RGB", (video.width, video.height), colour)
            out.mux(video.encode(av.VideoFrame.from_image(picture)))
        out.mux(video.encode())
        if audio is not None:
            samples = round(seconds * 48000)
            tone = (0.1 * np.sin(np.arange(samples) * 2 * np.pi * 440 / 48000)).astype("f4")
            for start in range(0, samples, 1024):
                chunk = tone[start : start + 1024].reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = 48000, start, Fraction(1, 48000)
                out.mux(audio.encode(frame))
            out.mux(audio.encode())
    return path


def streams_seconds(path: Path) -> dict[str, float]:
    with av.open(str(path)) as container:
        found = {}
        for stream in container.streams:
            assert stream.time_base is not None and stream.duration is not None
            found[stream.type] = float(stream.duration * stream.time_base)
        return found


def test_clips_that_share_their_parameters_are_joined_without_re_encoding(tmp_path):
    clips = [clip(tmp_path / f"{i}.mp4", 1.0 + i) for i in range(3)]  # 1 s, 2 s, 3 s
    film = stitch(clips, tmp_path / "film.mp4", tags={"title": "t"})
    assert not film.reencoded and film.why == "joined without re-encoding"
    assert abs(film.seconds - 6.0) < 1 / FPS
    lengths = streams_seconds(film.path)
    assert abs(lengths["video"] - 6.0) <= 1 / FPS
    assert abs(lengths["audio"] - 6.0) <= 3 * 1024 / 48000  # a frame of sound per joint
    with av.open(str(film.path)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 6 * FPS  # every frame, once
        assert container.metadata["title"] == "t"


def test_clips_that_differ_are_encoded_again_and_say_why(tmp_path):
    clips = [
        clip(tmp_path / "a.mp4", 1.0),
        clip(tmp_path / "b.mp4", 2.0, width=480),
        clip(tmp_path / "c.mp4", 1.0, sound=False),  # silence in its place
    ]
    film = stitch(clips, tmp_path / "film.mp4")
    assert film.reencoded and "b.mp4's codec parameters" in film.why and not film.notes
    lengths = streams_seconds(film.path)
    assert abs(lengths["video"] - 4.0) <= 1 / FPS
    assert abs(lengths["audio"] - 4.0) <= 2 * 1024 / 48000  # the sound fitted to the picture
    with av.open(str(film.path)) as container:
        sound = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
    per_second = [float(np.abs(sound[s * 48000 : (s + 1) * 48000]).mean()) for s in range(4)]
    assert min(per_second[:3]) > 0.02 and per_second[3] < 0.005  # the tone, then silence
    with av.open(str(film.path)) as container:
        assert container.streams.video[0].codec_context.width == 320  # the first clip's size


def test_a_crossfade_blends_each_joint_and_shortens_the_film_by_the_overlaps(tmp_path):
    clips = [
        clip(tmp_path / "red.mp4", 1.0, colour=(250, 0, 0), sound=False),
        clip(tmp_path / "blue.mp4", 1.0, colour=(0, 0, 250), sound=False),
    ]
    film = stitch(clips, tmp_path / "film.mp4", crossfade_s=0.5)
    assert film.reencoded and abs(film_seconds(film.path) - 1.5) <= 1 / FPS
    assert not film.notes  # no sound to leave out
    with av.open(str(film.path)) as container:
        frames = [f.to_image() for f in container.decode(video=0)]
    middle = frames[len(frames) // 2].getpixel((10, 10))  # half red, half blue
    assert 60 < middle[0] < 190 and 60 < middle[2] < 190
    sounding = [clip(tmp_path / "a.mp4", 1.0), clip(tmp_path / "b.mp4", 1.0)]
    film = stitch(sounding, tmp_path / "faded.mp4", crossfade_s=0.5)
    assert film.notes == ("the sound is left out: a crossfade would need it mixed",)
    assert "audio" not in streams_seconds(film.path)


def test_nothing_is_left_half_written(tmp_path):
    with pytest.raises(ValueError):
        stitch([], tmp_path / "film.mp4")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises((av.FFmpegError, OSError)):
        stitch([broken], tmp_path / "film.mp4")
    assert list(tmp_path.iterdir()) == [broken]
