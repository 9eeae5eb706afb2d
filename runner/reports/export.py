"""``kling-batch export DIR --kept DEST``: the videos a person kept, copied out with
their stories, so a finished selection can go to an editor, a bucket or a client.

Each kept video (its latest attempt judged ``kept``, downloaded and whole) is copied
with what travels with it: the MP4 keeps its own title and comment (written at
download), its poster, and its story JSON, to which the judgement (verdict and note) is
added. A file already at the destination with the same content is skipped; one with
other content is refused before anything is copied, so a second export never
overwrites another night's video of the same name. Each copy lands whole or not at all.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from runner.core.atomic import write_text_atomically
from runner.core.errors import RunFolderError
from runner.core.records import TaskStatus, Verdict
from runner.ledger.file import LedgerReads
from runner.media.frames import POSTER_SUFFIX
from runner.media.sidecars import STORY_SUFFIX


@dataclass
class Exported:
    copied: list[str] = field(default_factory=list)  # task keys
    already: list[str] = field(default_factory=list)  # the same files were there
    missing: list[str] = field(default_factory=list)  # kept, but no whole video here


def export_kept(state: LedgerReads, run_dir: Path, dest: Path) -> Exported:
    """Copy every kept video of ``run_dir`` (and its poster and story) into ``dest``."""
    reviews = state.reviews()
    done = Exported()
    plans: list[tuple[str, list[tuple[Path, Path]], dict[str, object]]] = []
    clashes: list[str] = []
    for record in state.tasks():
        review = reviews.get(record.task_key)
        if review is None or review.verdict != Verdict.KEPT:
            continue
        video = run_dir / record.video_path if record.video_path else None
        if record.status != TaskStatus.SUCCEEDED or video is None or not video.is_file():
            done.missing.append(record.task_key)
            continue
        pairs = [(video, dest / video.name)]
        poster = video.with_suffix(POSTER_SUFFIX)
        if poster.is_file():
            pairs.append((poster, dest / poster.name))
        story = _story(video) | {"verdict": str(review.verdict), "note": review.note}
        clashes += [str(to) for src, to in pairs if to.exists() and not filecmp.cmp(src, to, False)]
        story_file = dest / video.with_suffix(STORY_SUFFIX).name
        if story_file.exists() and json.loads(story_file.read_text("utf-8")) != story:
            clashes.append(str(story_file))
        plans.append((record.task_key, pairs, story))
    if clashes:
        raise RunFolderError(
            f"{dest} already holds other files of these names: {', '.join(clashes[:5])}"
            + (f" and {len(clashes) - 5} more" if len(clashes) > 5 else "")
            + "; nothing was copied: export to an empty folder, or move them away"
        )
    if plans:
        dest.mkdir(parents=True, exist_ok=True)
    for key, pairs, story in plans:
        fresh = [(src, to) for src, to in pairs if not to.exists()]
        for src, to in fresh:
            _copy_whole(src, to)
        story_file = dest / pairs[0][1].with_suffix(STORY_SUFFIX).name
        if not story_file.exists():
            write_text_atomically(story_file, json.dumps(story, ensure_ascii=False, indent=2))
            fresh.append((story_file, story_file))
        (done.copied if fresh else done.already).append(key)
    return done


def _story(video: Path) -> dict[str, object]:
    kept = video.with_suffix(STORY_SUFFIX)
    try:
        story = json.loads(kept.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return story if isinstance(story, dict) else {}


def _copy_whole(src: Path, to: Path) -> None:
    partial = to.with_name(f".{to.name}.part")
    try:
        shutil.copy2(src, partial)
        os.replace(partial, to)
    finally:
        partial.unlink(missing_ok=True)
