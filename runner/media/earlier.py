"""A video made again keeps the take it replaces: ``videos/earlier/<name>.take<N>.mp4``.

Every take was paid for. ``rerun`` (a redo of a rejected video, another take of a good
one) downloads the new video under the task's own name, so the one it replaces is moved
aside first, with its poster and its story, named by the attempt that made it. The
ledger is committed before the move: a crash between the two leaves the old take where
it was (the new download then replaces it), never a ledger that names a missing file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from runner.core.records import TaskRecord
from runner.media.frames import FRAMES_DIR, POSTER_SUFFIX
from runner.media.sidecars import STORY_SUFFIX

EARLIER_DIR = "earlier"  # under videos/


def keep_earlier_takes(run_dir: Path, records: Sequence[TaskRecord]) -> list[Path]:
    """Move each record's downloaded video (and poster and story) into
    ``videos/earlier/``; the videos moved."""
    moved = []
    for record in records:
        if not record.video_path:
            continue
        video = run_dir / record.video_path
        if not video.is_file():
            continue
        aside = video.parent / EARLIER_DIR
        aside.mkdir(exist_ok=True)
        stem = f"{video.stem}.take{record.attempts}"
        for suffix in (video.suffix, POSTER_SUFFIX, STORY_SUFFIX):
            found = video.with_suffix(suffix)
            if found.is_file():
                os.replace(found, aside / f"{stem}{suffix}")
        (video.parent / FRAMES_DIR / f"{video.stem}{POSTER_SUFFIX}").unlink(missing_ok=True)
        moved.append(aside / f"{stem}{video.suffix}")
    return moved
