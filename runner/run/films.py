"""A run's films: each chain's links joined into ``films/<chain>.mp4`` (``kling-batch
stitch``, and ``run``'s end for the chains whose rows say ``stitch: true``), or the
whole run in manifest order (``--all``: ``films/all.mp4``).

A film carries its chain's story: its MP4 title and comment (the chain, each link's key,
task id and prompt) and ``films/<chain>.json`` beside it (every link, how the clips were
joined). A film already made from the same videos is not made again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import av

from jobs import request_from_json
from runner.core.atomic import write_text_atomically
from runner.core.records import TaskRecord, TaskStatus
from runner.ledger.file import LedgerReads
from runner.media.stitch import Film, stitch

FILMS_DIR = "films"
WHOLE_RUN = "all"  # --all: every video of the run, in manifest order
FILMS_META = "films"  # the ledger's meta: the chains whose rows asked for a film


@dataclass
class FilmResult:
    chain: str
    links: list[str]
    film: Film | None = None
    kept: bool = False  # made before from the same videos: not made again
    missing: list[str] = field(default_factory=list)  # links without a whole video


def chains_of(records: Iterable[TaskRecord]) -> dict[str, list[TaskRecord]]:
    """Each chain's links, in chain order (the manifest's)."""
    found: dict[str, list[TaskRecord]] = {}
    for record in sorted(records, key=lambda r: r.position):
        if record.chain is not None:
            found.setdefault(record.chain, []).append(record)
    return found


def asked_films(state: LedgerReads) -> list[str]:
    return list(json.loads(state.meta().get(FILMS_META, "[]")))


def make_films(
    state: LedgerReads,
    run_dir: Path,
    names: Sequence[str] | None = None,
    *,
    whole_run: bool = False,
    crossfade_s: float = 0.0,
) -> list[FilmResult]:
    """The films asked for: ``names`` (None: every chain), and the whole run too."""
    records = state.tasks()
    chains = chains_of(records)
    wanted = list(chains) if names is None else list(names)
    unknown = [name for name in wanted if name not in chains]
    if unknown:
        raise KeyError(", ".join(unknown))
    groups = [(name, chains[name]) for name in wanted]
    if whole_run:
        made = [r for r in records if r.status == TaskStatus.SUCCEEDED and r.video_path]
        groups.append((WHOLE_RUN, sorted(made, key=lambda r: r.position)))
    return [_film(name, links, run_dir, crossfade_s) for name, links in groups]


def _film(name: str, links: list[TaskRecord], run_dir: Path, crossfade_s: float) -> FilmResult:
    result = FilmResult(name, [r.task_key for r in links])
    clips = []
    for record in links:
        video = run_dir / record.video_path if record.video_path else None
        if record.status != TaskStatus.SUCCEEDED or video is None or not video.is_file():
            result.missing.append(f"{record.task_key} ({record.status})")
        else:
            clips.append(video)
    if result.missing or not clips:
        return result
    out = run_dir / FILMS_DIR / f"{name}.mp4"
    story_path = out.with_suffix(".json")
    made_from = [[str(clip.relative_to(run_dir)), clip.stat().st_size] for clip in clips]
    kept = _kept_story(story_path)
    if (
        out.is_file()
        and kept.get("made_from") == made_from
        and kept.get("crossfade_s") == crossfade_s
    ):
        result.film = Film(
            out, float(str(kept["seconds"])), bool(kept["reencoded"]), str(kept["joined"])
        )
        result.kept = True
        return result
    stories = [_link_story(record) for record in links]
    comment = " | ".join(f"{s['task_key']} ({s['task_id']}): {s['prompt']}" for s in stories)
    film = stitch(clips, out, crossfade_s=crossfade_s, tags={"title": name, "comment": comment})
    story = {
        "chain": name,
        "seconds": round(film.seconds, 3),
        "joined": film.why,
        "reencoded": film.reencoded,
        "notes": list(film.notes),
        "crossfade_s": crossfade_s,
        "links": stories,
        "made_from": made_from,
    }
    write_text_atomically(story_path, json.dumps(story, ensure_ascii=False, indent=2))
    result.film = film
    return result


def _link_story(record: TaskRecord) -> dict[str, object]:
    request = request_from_json(record.request_json)
    return {
        "task_key": record.task_key,
        "task_id": record.task_id,
        "prompt": request.get("prompt"),
        "model": request.model.name,
        "video": record.video_path,
        "seconds": record.video_s,
        "parent": record.parent,
    }


def _kept_story(path: Path) -> dict[str, object]:
    try:
        story = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return story if isinstance(story, dict) else {}


def film_seconds(path: Path) -> float:
    """A film's length from its own container (what a player shows)."""
    with av.open(str(path)) as container:
        return float((container.duration or 0) / av.time_base)
