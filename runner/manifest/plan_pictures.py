"""A manifest's pictures in its plan: every image reference resolved once and every
local file read once (all at once, on every core), then each task's pictures checked,
their conversions planned, their digests kept for the fingerprint, and what to say of
them (``aspect_ratio: auto``, a turn, a cut).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from jobs.contract import Model, Wire
from jobs.images import check_image_reference, check_image_url, is_url
from jobs.picture_files import PictureFile
from jobs.pictures import (
    PictureSettings,
    auto_ratio,
    converted_digest,
    cut_warning,
    plan_conversion,
    ratio_of,
    turn_warning,
)
from jobs.problems import FieldProblem
from runner.manifest.rows import (
    TaskSpec,
    model_of_spec,
)
from runner.media.chain_refs import parent_of
from runner.media.picture_pool import (
    IMAGES_DIR,
    PlannedPicture,
    open_pictures,
)

# An estimate above this is said with a warning before spending: a 1 KB row of lists
# can plan a batch of hundreds of thousands of dollars.

AUTO = "auto"  # aspect_ratio: auto, the model's ratio closest to each picture's


class TaskPictures:
    """One task's pictures: each checked, its conversion planned, its digest for the
    fingerprint, and what to say of it."""

    def __init__(self, model: Model, settings: PictureSettings, auto: bool):
        self.model, self.settings, self.auto = model, settings, auto
        self.digests: dict[str, str | None] = {}
        self.sources: dict[str, str | None] = {}  # the files' own sha256
        self.planned: list[PlannedPicture] = []
        self.problems: list[FieldProblem] = []
        self.warnings: list[FieldProblem] = []
        self.urls = 0

    def add(
        self, name: str, raw: str, pictures: ManifestPictures, typed: dict[str, Any]
    ) -> str | None:
        """Check the picture of field ``name``; returns the reference to keep. With
        ``aspect_ratio: auto``, the first frame decides the task's ratio (in ``typed``).
        A chain link's first frame (its parent's last) does not exist yet: it counts in
        the fingerprint as the reference itself, and is checked when it is made."""
        if parent_of(raw) is not None:
            self.digests[name] = raw
            if self.auto and name == "image":
                self.problems.append(
                    FieldProblem("aspect_ratio", AUTO, "a link follows its parent's video")
                )
            return raw
        reference, picture, problems = pictures.check(raw)
        self.problems += [FieldProblem(name, p.value, p.rule, p.code) for p in problems]
        self.digests[name] = None
        decides = self.auto and name == "image"
        if reference and is_url(reference):
            self.urls += 1
            if decides:
                self.problems.append(
                    FieldProblem(
                        "aspect_ratio", AUTO, "follows the picture; a URL is not read here"
                    )
                )
        if picture is None or picture.facts is None or problems:
            return reference
        if decides:
            typed["aspect_ratio"] = auto_ratio(*picture.facts.shown, _ratios(self.model))
        conversion = plan_conversion(picture.facts, _shape(self.settings, typed))
        if conversion.problem:
            self.problems.append(FieldProblem(name, picture.path, conversion.problem))
            return reference
        digest = converted_digest(picture.sha256, conversion)
        self.digests[name], self.sources[name] = digest, picture.sha256
        if not conversion.as_is:
            file = f"{IMAGES_DIR}/{digest[:32]}{conversion.suffix}"
            self.planned.append(PlannedPicture(name, picture.path, conversion, file))
        said = (turn_warning(conversion, typed.get("aspect_ratio")), cut_warning(conversion))
        self.warnings += [FieldProblem(name, picture.path, text) for text in said if text]
        return reference


def _ratios(model: Model) -> tuple[str, ...]:
    spec = model.by_name.get("aspect_ratio")
    return tuple(str(c) for c in spec.choices) if spec else ("16:9", "9:16", "1:1")


def _shape(settings: PictureSettings, typed: Mapping[str, Any]) -> PictureSettings:
    """With ``fit``, the shape a picture is made: the aspect ratio the row gives (or
    ``auto`` chose), since Kling follows the picture's own shape; without one, the
    nearest shape the API takes."""
    given = typed.get("aspect_ratio")
    if settings.fit is None or not isinstance(given, str) or ":" not in given:
        return settings
    return replace(settings, ratio=ratio_of(given))


class ManifestPictures:
    """Each image reference resolved once, each local file read once: every file the
    manifest names is read before the tasks are planned, all of them at once on every
    core (:func:`runner.media.picture_pool.open_pictures`)."""

    def __init__(self, specs: list[TaskSpec], base_dir: Path):
        self.base_dir = base_dir
        self._resolved: dict[str, str | Path | list[FieldProblem]] = {}
        paths = [r for r in self._references(specs) if isinstance(r, Path)]
        self.files = open_pictures(paths)

    def _references(self, specs: list[TaskSpec]) -> Iterator[str | Path | list[FieldProblem]]:
        for spec in specs:
            model = model_of_spec(spec)
            if isinstance(model, FieldProblem):
                continue
            for name, raw in spec.values.items():
                known = model.by_name.get(name)
                if (
                    known is not None
                    and known.wire == Wire.IMAGE
                    and isinstance(raw, str)
                    and parent_of(raw) is None  # a chain link's frame is made later
                ):
                    yield self.resolve(raw.strip())

    def resolve(self, raw: str) -> str | Path | list[FieldProblem]:
        """A URL as it is, a local path made absolute, or why it is neither."""
        if raw not in self._resolved:
            self._resolved[raw] = self._resolve(raw)
        return self._resolved[raw]

    def _resolve(self, raw: str) -> str | Path | list[FieldProblem]:
        if is_url(raw):
            return raw
        if problems := check_image_reference(raw):
            return problems
        path = Path(raw).expanduser()
        if not path.is_absolute():
            path = self.base_dir / path
        try:
            return path.resolve()
        except (RuntimeError, OSError):  # Python 3.11 says a symlink loop this way
            return [FieldProblem("image", raw, "is a symlink loop")]

    def check(self, raw: str) -> tuple[str | None, PictureFile | None, list[FieldProblem]]:
        """(the reference to send, the file read, the problems)."""
        resolved = self.resolve(raw)
        if isinstance(resolved, list):
            return None, None, list(resolved)
        if isinstance(resolved, str):
            return resolved, None, check_image_url(resolved)
        picture = self.files[resolved]
        if picture.problem:
            code = picture.code or FieldProblem.code
            return None, picture, [FieldProblem("image", picture.path, picture.problem, code)]
        return str(resolved), picture, []
