"""The pictures' CPU work, on every core: each local picture read once (and remembered
between commands), each conversion made once into the run folder's ``images/``.

Decoding a 12 MP JPEG takes a tenth of a second of one core, so a folder of 500 is a
minute on one core and half that on two: the work goes to a process pool (threads
would share one core under the GIL). Each worker holds one picture at a time, so the
memory stays that of a few pictures however large the folder.

``validate`` run twice on the same folder reads nothing the second time: what a file
is (its digest, its header, whether it is whole) is kept in a small SQLite cache keyed
by the file's identity (path, size, modification and change times, inode) and by this
code's and Pillow's versions, so an edited file, or a newer check, is read again.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import PIL

from jobs.images import check_image_bytes
from jobs.picture_files import PictureFile, convert, open_picture
from jobs.pictures import Conversion
from runner.core.atomic import write_bytes_atomically
from runner.core.pool import map_on_every_core
from runner.core.records import TaskRecord
from runner.core.user_cache import user_cache_dir
from runner.media.chain_refs import parent_of

CHECKS_VERSION = 1  # raise when what ``open_picture`` finds changes
IMAGES_DIR = "images"


# --- reading ------------------------------------------------------------------------------


def open_pictures(
    paths: Iterable[Path], env: Mapping[str, str] = os.environ
) -> dict[Path, PictureFile]:
    """Every picture read once: from the cache when the file is the one it saw, on
    every core otherwise."""
    wanted = list(dict.fromkeys(paths))
    cache = CheckCache.open(cache_path(env))
    try:
        identities = {path: _identity(path) for path in wanted}
        found = cache.get([i for i in identities.values() if i])
        known = {p: found[i] for p, i in identities.items() if i and i in found}
        todo = [p for p in wanted if p not in known]
        read = dict(zip(todo, map_on_every_core(open_picture, todo), strict=True))
        cache.put({identities[p]: f for p, f in read.items() if identities[p] and f.sha256})
    finally:
        cache.close()
    return {**known, **read}


def cache_path(env: Mapping[str, str] = os.environ) -> Path | None:
    """``pictures.sqlite`` in the user's cache folder (``runner.core.user_cache``)."""
    return user_cache_dir(env) / "pictures.sqlite"


def _identity(path: Path) -> str | None:
    try:
        info = path.stat()
    except OSError:
        return None  # said by open_picture, never cached
    stamp = f"{info.st_size}|{info.st_mtime_ns}|{info.st_ctime_ns}|{info.st_ino}"
    return f"{CHECKS_VERSION}|{PIL.__version__}|{path}|{stamp}"


class CheckCache:
    """What each file was found to be, by identity. A cache that cannot be opened (a
    read-only home, a damaged file) is no cache: the files are read, nothing fails."""

    def __init__(self, db: sqlite3.Connection | None):
        self._db = db

    @classmethod
    def open(cls, path: Path | None) -> CheckCache:
        if path is None:
            return cls(None)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=5)
            db.execute("CREATE TABLE IF NOT EXISTS checks (identity TEXT PRIMARY KEY, found TEXT)")
        except (OSError, sqlite3.Error):
            return cls(None)
        return cls(db)

    def get(self, identities: Sequence[str]) -> dict[str, PictureFile]:
        if self._db is None or not identities:
            return {}
        found: dict[str, PictureFile] = {}
        try:
            for start in range(0, len(identities), 500):  # SQLite's parameter limit
                chunk = identities[start : start + 500]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT identity, found FROM checks WHERE identity IN ({marks})"
                for identity, text in self._db.execute(query, chunk):
                    found[identity] = PictureFile.from_json(text)
        except (sqlite3.Error, ValueError, TypeError):
            return {}
        return found

    def put(self, found: Mapping[str | None, PictureFile]) -> None:
        if self._db is None or not found:
            return
        try:
            with self._db:
                self._db.executemany(
                    "INSERT OR REPLACE INTO checks VALUES (?, ?)",
                    [(identity, f.to_json()) for identity, f in found.items()],
                )
        except sqlite3.Error:
            pass  # a cache that cannot be written costs a read next time, nothing else

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


# --- converting ---------------------------------------------------------------------------


class ToConvert(Protocol):
    """One conversion to make (:class:`PlannedPicture`)."""

    @property
    def original(self) -> str: ...  # the file as checked
    @property
    def conversion(self) -> Conversion: ...
    @property
    def name(self) -> str: ...  # "images/<digest>.jpg", relative to the run folder


@dataclass(frozen=True)
class Converted:
    name: str
    size_bytes: int = 0
    problem: str | None = None  # why it could not be made (the source changed, ...)


# --- the ledger's ``pictures`` column: written and read here only ----------------------


def pictures_json(
    images: Mapping[str, tuple[str, Conversion]], settings: Mapping[str, Any]
) -> str | None:
    """A task's converted pictures (field -> (the file sent, how it is made)) and the
    row's picture settings, as the ledger keeps them; None when there are neither."""
    if not images and not settings:
        return None
    kept = {f: {"file": file, "conversion": c.to_dict()} for f, (file, c) in images.items()}
    return json.dumps({"settings": dict(settings), "images": kept})


def read_pictures(text: str | None) -> dict[str, tuple[str, Conversion]]:
    """Field -> (the file sent instead, relative to the run folder; how it is made)."""
    if not text:
        return {}
    images = json.loads(text).get("images", {})
    return {f: (str(i["file"]), Conversion.from_dict(i["conversion"])) for f, i in images.items()}


def picture_settings(text: str | None) -> dict[str, Any]:
    """What the row asked of its pictures (``matte``, ``fit``, ``max_edge``)."""
    return dict(json.loads(text).get("settings", {})) if text else {}


def sent_files(text: str | None) -> dict[str, str]:
    """What a ledger task sends instead of each converted picture (field -> the file,
    relative to the run folder)."""
    return {name: file for name, (file, _) in read_pictures(text).items()}


def first_frame_sent(record: TaskRecord, run_dir: Path) -> str:
    """The first frame as the API got it, for the report and the contact sheet: the
    converted file in ``images/``, or the image the request names (a path or a URL)."""
    converted = sent_files(record.pictures).get("image")
    if converted:
        return str(run_dir / converted)
    return str(json.loads(record.request_json).get("image") or "")


def convert_pictures(run_dir: Path, wanted: Iterable[ToConvert]) -> dict[str, Converted]:
    """Make every conversion not yet in ``run_dir/images`` (a conversion is made once
    per run folder: ``run`` again, ``resume`` and ``rerun`` find it there)."""
    (run_dir / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    unique = {job.name: job for job in wanted}
    done = {}
    todo = []
    for name, job in unique.items():
        size = _size(run_dir / name)
        if size:
            done[name] = Converted(name, size)
        else:
            todo.append(job)
    jobs = [(str(run_dir), job) for job in todo]
    for result in map_on_every_core(_convert_one, jobs):
        done[result.name] = result
    return done


def _size(path: Path) -> int:
    """A made file's size; 0 when it is missing (or empty: a power cut's leftover)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _convert_one(job: tuple[str, ToConvert]) -> Converted:
    """In a worker: read, convert, check as the API would, write durably (the file is
    what a paid task sends; a torn one after a power cut would be refused)."""
    run_dir, wanted = Path(job[0]), job[1]
    try:
        data = convert(Path(wanted.original).read_bytes(), wanted.conversion)
    except Exception as exc:  # a source changed or damaged since it was checked
        return Converted(wanted.name, problem=f"{wanted.original} could not be converted: {exc}")
    _, problems = check_image_bytes(data)
    if problems:
        said = "; ".join(p.rule for p in problems)
        return Converted(
            wanted.name, problem=f"{wanted.original} converted is still refused: {said}"
        )
    write_bytes_atomically(run_dir / wanted.name, data, durable=True)
    return Converted(wanted.name, len(data))


@dataclass(frozen=True)
class PlannedPicture:
    """A picture of a task that is converted before it is sent (``images/<digest>``)."""

    field: str  # image, end_image, ...
    original: str  # the file as the manifest names it, resolved
    conversion: Conversion
    name: str  # relative to the run folder: images/<digest>.jpg


def planned_pictures(record: TaskRecord) -> tuple[PlannedPicture, ...]:
    """The converted pictures a ledger task sends, as its plan made them."""
    converted = read_pictures(record.pictures)
    if not converted:
        return ()
    request = json.loads(record.request_json)
    return tuple(
        PlannedPicture(name, str(request[name]), conversion, file)
        for name, (file, conversion) in converted.items()
        if parent_of(request[name]) is None  # a link's first frame: the engine makes it
    )
