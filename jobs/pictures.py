"""The pictures people have, made into first frames the API takes: what must change.

Every Kling page on Novita takes a PNG or JPEG of at most 10 MB, both sides at least
300 px, between 1:2.5 and 2.5:1 (``jobs.images``). People have HEIC from phones, WebP
and AVIF from the web, phone JPEGs turned by EXIF, CMYK print files, 16-bit scans and
48 MP camera files. This module decides, from what opening a picture learned (its
:class:`PictureFacts`, no pixels), what must be done to it (a :class:`Conversion`: turn,
matte, 8 bits, shrink, crop or pad, encode). The decision is a pure function with a
table test; the doing is Pillow's and pillow-heif's, in ``jobs.picture_files``.

A picture that needs nothing is sent byte for byte (``Conversion.as_is``): a new
Pillow never changes what an existing run sends, or its fingerprint.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from PIL import ImageColor

from jobs.images import (
    IMAGE_ASPECT_RANGE,
    IMAGE_MAX_BYTES,
    IMAGE_MIN_SIDE,
    orientation,
)
from jobs.problems import FieldProblem

DEFAULT_MAX_EDGE = 2048  # Kling renders 1080p: more pixels only cost bytes and time
JPEG_QUALITY = 90
WHITE = (255, 255, 255)
# Pillow's names of what a person can hand us; the first two the API takes as they are.
SENDABLE = frozenset({"JPEG", "PNG"})
OPENABLE = SENDABLE | {"HEIF", "WEBP", "AVIF", "TIFF", "BMP", "GIF", "MPO"}
TURNED = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height
HIGH_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
_SENDABLE_MODES = frozenset({"RGB", "L", "P", "1"})  # CMYK, 16 bits, alpha are not
# What a row may ask of its pictures; none of them is ever sent to the API.
PICTURE_FIELDS = ("matte", "fit", "max_edge")
FITS = ("crop", "pad", "none")
MAX_EDGE_RANGE = (IMAGE_MIN_SIDE, 8192)
# A file bigger than this is not read at all: even a 100 MP camera file is smaller,
# and reading a stray video or disk image whole would take the memory.
PICTURE_MAX_BYTES = 200_000_000
# File names offered to a glob or folder row (and accepted as a single image).
PICTURE_SUFFIXES = (
    ".png", ".jpg", ".jpeg", ".heic", ".heif", ".webp", ".avif", ".tif", ".tiff", ".bmp",
    ".gif", ".mpo",
)  # fmt: skip


@dataclass(frozen=True)
class PictureFacts:
    """What opening a picture told us, before any pixel is decoded."""

    format: str  # Pillow's name: JPEG, PNG, HEIF, WEBP, ...
    width: int  # as stored
    height: int
    size_bytes: int
    mode: str = "RGB"
    orientation: int = 1  # EXIF orientation (1: as stored)
    frames: int = 1
    has_alpha: bool = False

    @property
    def shown(self) -> tuple[int, int]:
        """The size a viewer shows, and the API must get: EXIF turn applied."""
        if self.orientation in TURNED:
            return self.height, self.width
        return self.width, self.height


@dataclass(frozen=True)
class PictureSettings:
    """What a row asks of its pictures (``max_edge``, ``matte``, ``fit``, a ratio)."""

    max_edge: int = DEFAULT_MAX_EDGE
    matte: tuple[int, int, int] = WHITE
    fit: str | None = None  # "crop" or "pad": make the picture the target ratio
    ratio: float | None = None  # width / height wanted with ``fit`` (None: nearest allowed)


def read_settings(values: Mapping[str, Any]) -> tuple[PictureSettings, list[FieldProblem]]:
    """A task's picture settings (``matte``, ``fit``, ``max_edge``), checked; a value
    that is wrong is a problem naming its field, like any setting."""
    problems: list[FieldProblem] = []
    settings = PictureSettings()
    matte = values.get("matte")
    if matte not in (None, ""):
        try:
            rgb = ImageColor.getrgb(str(matte).strip())
            settings = replace(settings, matte=(rgb[0], rgb[1], rgb[2]))
        except ValueError:
            problems.append(
                FieldProblem("matte", matte, 'must be a colour: "#ffffff", "#000", "black"')
            )
    fit = values.get("fit")
    if fit not in (None, ""):
        if not isinstance(fit, str) or fit.strip().lower() not in FITS:
            problems.append(FieldProblem("fit", fit, f"must be one of {', '.join(FITS)}"))
        elif fit.strip().lower() != "none":
            settings = replace(settings, fit=fit.strip().lower())
    edge = values.get("max_edge")
    if edge not in (None, ""):
        low, high = MAX_EDGE_RANGE
        number = edge if isinstance(edge, int) and not isinstance(edge, bool) else None
        if isinstance(edge, str) and edge.strip().isdigit():
            number = int(edge.strip())
        if number is None or not low <= number <= high:
            problems.append(
                FieldProblem("max_edge", edge, f"must be a whole number of px, {low} to {high}")
            )
        else:
            settings = replace(settings, max_edge=number)
    return settings, problems


@dataclass(frozen=True)
class Conversion:
    """What is done to one picture, in order; nothing at all when ``as_is``."""

    facts: PictureFacts
    turn: bool = False  # bake the EXIF orientation into the pixels
    first_frame: bool = False  # an animation or multi-picture file: frame 0 only
    matte: tuple[int, int, int] | None = None  # transparency composited on this colour
    to_8_bits: bool = False  # 16-bit values scaled to 8, not clipped
    crop_to: tuple[int, int] | None = None  # centre-cropped to this size (before scaling)
    pad_to: tuple[int, int] | None = None  # padded with the matte to this size
    size: tuple[int, int] = (0, 0)  # the final size
    encode: str | None = None  # "JPEG" or "PNG"; None: the bytes are sent as they are
    problem: str | None = None  # why the picture cannot become a first frame

    @property
    def as_is(self) -> bool:
        return self.encode is None and self.problem is None

    @property
    def suffix(self) -> str:
        return ".png" if self.encode == "PNG" else ".jpg"

    def key(self) -> str:
        """What is done, canonically: with the source's digest, a converted picture's
        fingerprint (:func:`converted_digest`). The steps, not the bytes they make, so a
        newer Pillow never makes a paid task look changed; and the steps, not the
        settings, so a matte on a picture without transparency changes nothing."""
        done = asdict(self)
        del done["facts"], done["problem"]
        return json.dumps(done, sort_keys=True)

    def to_dict(self) -> dict[str, Any]:
        """Kept in the ledger, so that ``resume`` converts a deleted cache file again."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Conversion:
        data = dict(data)
        facts = data.pop("facts", None) or data.pop("source")  # its name before 2026-12-05
        data["facts"] = PictureFacts(**facts)
        for name in ("matte", "crop_to", "pad_to", "size"):
            if data.get(name) is not None:
                data[name] = tuple(data[name])
        return cls(**data)

    def describe(self) -> str:
        """``HEIF 4032x3024 -> JPEG 2048x1536, turned by its EXIF`` (the listing adds
        the files' sizes)."""
        source = self.facts
        if self.as_is:
            return f"{source.format} {source.width}x{source.height}, sent as it is"
        width, height = self.size
        said = f"{source.format} {source.width}x{source.height} -> {self.encode} {width}x{height}"
        return ", ".join([said, *(step for _, step in self.steps() if step)])

    def steps(self) -> list[tuple[str, str]]:
        """(kind, as said) of each thing done: the listing counts them by kind."""
        source, done = self.facts, list[tuple[str, str]]()
        if source.format not in SENDABLE:
            done.append((f"from {source.format}", ""))
        if self.turn:
            done.append(("turned by EXIF", "turned by its EXIF"))
        if self.first_frame:
            done.append(("first frame only", f"first of {source.frames} frames"))
        if self.matte is not None and source.has_alpha:
            done.append(("on a matte", f"transparency on {_hex(self.matte)}"))
        if self.to_8_bits:
            done.append(("16 bits to 8", "16 bits scaled to 8"))
        if source.mode not in _SENDABLE_MODES | HIGH_BIT_MODES and not source.has_alpha:
            done.append((f"{source.mode} to RGB", f"{source.mode} to RGB"))
        if self.crop_to:
            done.append(("cropped", "centre-cropped"))
        if self.pad_to:
            done.append(("padded", f"padded with {_hex(self.matte or WHITE)}"))
        if max(self.size) < max(self.crop_to or self.pad_to or source.shown):
            done.append(("shrunk", ""))
        return done


def _hex(colour: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*colour)


def converted_digest(source_sha256: str, conversion: Conversion) -> str:
    """The digest a converted picture counts as in its task's fingerprint: the source's
    content and what is done to it. A picture sent as it is counts as its own sha256,
    as it always has (existing run folders' fingerprints do not move)."""
    if conversion.as_is:
        return source_sha256
    return hashlib.sha256(f"{source_sha256}|{conversion.key()}".encode()).hexdigest()


@functools.lru_cache(maxsize=4096)
def plan_conversion(
    source: PictureFacts, settings: PictureSettings = PictureSettings()
) -> Conversion:
    """What must change for ``source`` to be a first frame the API takes. Pure (so a
    batch that names one picture in many rows plans it once): the table test pins it,
    :func:`convert` carries it out."""
    if source.format not in OPENABLE:
        return Conversion(source, problem=f"is a {source.format} picture, which is not read here")
    width, height = source.shown
    turn = source.orientation not in (0, 1)  # turned, mirrored or upside down
    crop_to = pad_to = None
    if settings.fit in ("crop", "pad"):
        target = settings.ratio or nearest_allowed_ratio(width / height)
        if not math.isclose(width / height, target, rel_tol=1e-3):
            if settings.fit == "crop":
                crop_to = _crop_size(width, height, target)
                width, height = crop_to
            else:
                pad_to = _pad_size(width, height, target)
                width, height = pad_to
    scale = min(1.0, settings.max_edge / max(width, height))
    if source.size_bytes > IMAGE_MAX_BYTES and source.format in SENDABLE and scale == 1.0:
        scale = min(1.0, math.sqrt(IMAGE_MAX_BYTES / source.size_bytes))
    size = _scaled(width, height, scale)
    if scale < 1 and crop_to is None and pad_to is None and source.format in DCT_SCALED:
        size = _dct_size(width, height, size)
    needs = (
        source.format not in SENDABLE
        or turn
        or source.frames > 1
        or source.has_alpha
        or source.mode in HIGH_BIT_MODES
        or source.mode not in _SENDABLE_MODES
        or source.size_bytes > IMAGE_MAX_BYTES
        or crop_to is not None
        or pad_to is not None
        or size != source.shown
    )
    problem = _shape_problem(*size)
    if not needs:
        return Conversion(source, size=size, problem=problem)
    lossless = source.format == "PNG" and source.size_bytes <= IMAGE_MAX_BYTES
    return Conversion(
        source,
        turn=turn,
        first_frame=source.frames > 1,
        matte=settings.matte if source.has_alpha or pad_to else None,
        to_8_bits=source.mode in HIGH_BIT_MODES,
        crop_to=crop_to,
        pad_to=pad_to,
        size=size,
        encode="PNG" if lossless else "JPEG",
        problem=problem,
    )


def ratio_of(choice: str) -> float:
    """``"16:9"`` as width / height."""
    width, _, height = choice.partition(":")
    return float(width) / float(height)


def auto_ratio(width: int, height: int, choices: tuple[str, ...]) -> str:
    """For ``aspect_ratio: auto``: the model's choice closest to the picture's shape.

    Shapes are compared as logarithms, so that 2:1 is as far from 1:1 as 1:2 is. A 4:3
    picture is then exactly between 1:1 and 16:9 ((4/3) / 1 = (16/9) / (4/3)): a tie
    goes to the choice that keeps the picture's own way up (a landscape 4:3 gets 16:9,
    a portrait 3:4 gets 9:16), since the video follows the picture's shape."""
    shape = math.log(width / height)

    def distance(choice: str) -> tuple[float, int]:
        off = round(abs(math.log(ratio_of(choice)) - shape), 9)
        same_way = _way(ratio_of(choice)) == _way(width / height)
        return off, 0 if same_way else 1

    return min(choices, key=distance)


def _way(ratio: float) -> int:
    """1 landscape, -1 portrait, 0 square."""
    return (ratio > 1) - (ratio < 1)


def turn_warning(conversion: Conversion, aspect_ratio: str | None) -> str | None:
    """A picture turned by its EXIF (so sent as a viewer shows it) against the
    aspect ratio asked: the video may not go the way the person meant."""
    source = conversion.facts
    if not conversion.turn or source.orientation not in TURNED:
        return None
    shown = orientation(*source.shown)
    wanted = {"16:9": "landscape", "9:16": "portrait"}.get(aspect_ratio or "")
    if not wanted or shown == wanted:
        return None
    return (
        f"is stored {orientation(source.width, source.height)} but its EXIF shows it "
        f"{shown}, and it is sent {shown}; aspect_ratio is {aspect_ratio} ({wanted}): check "
        "which way the video should go (aspect_ratio: auto follows the picture)"
    )


def cut_warning(conversion: Conversion) -> str | None:
    """An animation or a multi-picture file (MPO) sends its first frame only."""
    if not conversion.first_frame:
        return None
    return f"has {conversion.facts.frames} frames: only the first is sent"


def nearest_allowed_ratio(ratio: float) -> float:
    """``ratio`` pulled into the API's range (1:2.5 to 2.5:1)."""
    low, high = IMAGE_ASPECT_RANGE
    return min(max(ratio, low), high)


def _scaled(width: int, height: int, scale: float) -> tuple[int, int]:
    """The size at ``scale``, rounded so that a picture at the edge of the allowed
    aspect range stays inside it (2048x819 would be 2.5006:1)."""
    low, high = IMAGE_ASPECT_RANGE
    new_width, new_height = max(1, round(width * scale)), max(1, round(height * scale))
    if low <= width / height <= high:
        if new_width / new_height > high:
            new_height = math.ceil(new_width / high)
        elif new_width / new_height < low:
            new_width = math.ceil(new_height * low)
    return new_width, new_height


# A JPEG decodes at 1/2, 1/4 or 1/8 of its size directly (libjpeg scales the DCT, so
# the pixels it never makes cost nothing). When one of those sizes is a little under
# the target, it is the size sent: 4032x3024 becomes 2016x1512, decoded small and not
# resized at all (measured: 0.15 s instead of 0.54 s a file), instead of 2048x1536.
DCT_SCALED = frozenset({"JPEG", "MPO"})
DCT_SLACK = 0.9  # how far under the target (its long edge) a DCT size may be


def _dct_size(width: int, height: int, target: tuple[int, int]) -> tuple[int, int]:
    for factor in (8, 4, 2):
        scaled = (math.ceil(width / factor), math.ceil(height / factor))
        if DCT_SLACK * max(target) <= max(scaled) <= max(target):
            return scaled if _shape_problem(*scaled) is None else target
    return target


def _crop_size(width: int, height: int, ratio: float) -> tuple[int, int]:
    if width / height > ratio:
        return round(height * ratio), height
    return width, round(width / ratio)


def _pad_size(width: int, height: int, ratio: float) -> tuple[int, int]:
    if width / height > ratio:
        return width, round(width / ratio)
    return round(height * ratio), height


def _shape_problem(width: int, height: int) -> str | None:
    if min(width, height) < IMAGE_MIN_SIDE:
        return (
            f"is {width}x{height} as it would be sent: both sides must be at least "
            f"{IMAGE_MIN_SIDE} px, and a picture is never enlarged"
        )
    low, high = IMAGE_ASPECT_RANGE
    if not low - 1e-9 <= width / height <= high + 1e-9:
        return (
            f"is {width}x{height} ({width / height:.2f}:1): the aspect ratio must be between "
            "1:2.5 and 2.5:1; fit: crop or fit: pad makes it so"
        )
    return None
