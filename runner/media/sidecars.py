"""What goes with each downloaded video: its poster, its story inside the file, and its
story beside it. PyAV does the decoding and the remux (it bundles FFmpeg); everything
here is blocking and runs in the fetcher's disk thread, never on the event loop.

- The poster is the first decoded frame (a keyframe at the start: no seek, one frame
  decoded, ~15-20 ms at 1080p), saved as ``videos/<name>.jpg`` for ``<video poster>``.
- The MP4's own ``title`` (task key) and ``comment`` (the prompt) are written by a remux
  that copies packets without re-encoding, so a player or ``ffprobe`` shows them after
  the file is copied anywhere. The result is checked by the box walk again; if anything
  goes wrong the untagged (whole) file is kept: a tag never costs a video.
- ``videos/<name>.json``: model, prompt, every setting as sent, task id, the source
  image and its sha256, times, estimated cost, kling-batch's version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import av

from jobs import request_from_json
from jobs.images import is_url
from runner.core.atomic import write_text_atomically
from runner.core.records import TaskRecord
from runner.media.frames import (
    FRAMES_AT,
    POSTER_QUALITY,
    POSTER_SUFFIX,
    keyframes,
    small_frame,
    write_frames,
)
from runner.media.mp4 import Mp4Check, check_mp4
from runner.media.picture_pool import planned_pictures

log = logging.getLogger(__name__)

STORY_SUFFIX = ".json"


@dataclass(frozen=True)
class VideoTags:
    """What the MP4 itself carries: its title and comment."""

    title: str
    comment: str


def tag_video(path: Path, tags: VideoTags, expected_s: float | None) -> Mp4Check | None:
    """Rewrite ``path`` with ``tags`` in its metadata (packets copied, nothing
    re-encoded); returns the check of the tagged file, or None when the file was left
    as it was (the remux failed, or its result was not whole)."""
    tagged = path.with_name(path.name + ".tagged")
    try:
        with av.open(str(path)) as source, av.open(str(tagged), "w", format="mp4") as out:
            streams = {s.index: out.add_stream_from_template(s) for s in source.streams}
            out.metadata["title"] = tags.title
            out.metadata["comment"] = tags.comment
            for packet in source.demux():
                if packet.dts is None:  # the demuxer's end-of-stream marker
                    continue
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
        check = check_mp4(tagged, expected_s)
        if not check.whole:
            raise ValueError(check.problem)
    except (av.FFmpegError, OSError, ValueError, KeyError) as exc:
        log.info("%s: kept without its tags (%s)", path.name, exc)
        tagged.unlink(missing_ok=True)
        return None
    with tagged.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tagged, path)
    return check


def write_poster(video: Path) -> Path | None:
    """The first frame as ``<video>.jpg`` beside it, and the contact sheet's frames of
    the video (``runner.media.frames``) from the same opening of the file; None if no
    poster could be decoded (a poster is a picture for a person, never proof that a video is
    whole)."""
    poster = video.with_suffix(POSTER_SUFFIX)
    partial = poster.with_name(poster.name + ".part")
    try:
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            frame = next(container.decode(stream))
            picture = frame.to_image()  # type: ignore[no-untyped-call]
            picture.convert("RGB").save(partial, "JPEG", quality=POSTER_QUALITY)
            later = keyframes(container, stream, FRAMES_AT[1:])
    except (av.FFmpegError, OSError, StopIteration, IndexError, ValueError) as exc:
        log.info("%s: no poster (%s)", video.name, exc)
        partial.unlink(missing_ok=True)
        return None
    os.replace(partial, poster)
    write_frames(video, [small_frame(picture), *later])
    return poster


def poster_of(video: Path) -> Path | None:
    poster = video.with_suffix(POSTER_SUFFIX)
    return poster if poster.is_file() else None


def write_story(video: Path, story: Mapping[str, Any]) -> Path:
    """``<video>.json`` beside it: the video's provenance, readable by anyone."""
    path = video.with_suffix(STORY_SUFFIX)
    write_text_atomically(path, json.dumps(story, indent=2, ensure_ascii=False) + "\n")
    return path


def file_sha256(path: Path) -> str | None:
    try:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def video_story(record: TaskRecord, check: Mp4Check) -> dict[str, Any]:
    """Everything a copied video needs to say where it came from: the source picture
    (its path and sha256) and, when it was converted, what was done to it."""
    request = request_from_json(record.request_json)
    images = {name: request.get(name) for name in request.model.image_fields if request.get(name)}
    sources = {
        name: {
            "path": reference,
            "sha256": None if is_url(reference) else file_sha256(Path(reference)),
        }
        for name, reference in images.items()
    }
    return {
        "task_key": record.task_key,
        "model": request.model.name,
        "prompt": request.get("prompt"),
        "negative_prompt": request.get("negative_prompt"),
        "sent": request.body(images),  # every setting as the API got it (images by name)
        "task_id": record.task_id,
        "source_image": record.image or None,
        "images": sources,
        "conversions": [  # what was done to a picture before it was sent
            {
                "field": picture.field,
                "source": picture.original,
                "sent": picture.name,  # in the run folder
                "done": picture.conversion.describe(),
            }
            for picture in planned_pictures(record)
        ],
        "submitted_at": iso_time(record.submitted_at),
        "finished_at": iso_time(record.finished_at),
        "duration_s": check.duration_s,
        "video_problem": check.problem,
        "est_cost_usd": record.est_cost_usd,
        "kling_batch_version": _version(),
    }


def _version() -> str:
    try:
        return metadata.version("kling-batch")
    except metadata.PackageNotFoundError:  # run from a source tree without installing
        return "unknown"


def iso_time(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
