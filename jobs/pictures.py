"""The pictures people have, made into first frames the API takes: what must change.

Every Kling page on Novita takes a PNG or JPEG of at most 10 MB, both sides at least
300 px, between 1:2.5 and 2.5:1 (``jobs.images``). People have HEIC from phones, WebP
and AVIF from the web, phone JPEGs turned by EXIF, CMYK print files, 16-bit scans and
48 MP camera files. This module decides, from what opening a picture learned (its
:class:`Source`, no pixels), what must be done to it (a :class:`Conversion`: turn,
matte, 8 bits, shrink, crop or pad, encode), and does it (:func:`convert`). The decision
is a pure function with a table test; the doing is Pillow's (and pillow-heif's for
HEIC/HEIF, whose opener is registered here once).

A picture that needs nothing is sent byte for byte (``Conversion.as_is``): a new
Pillow never changes what an existing run sends, or its fingerprint.
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass

from PIL import Image, ImageOps

from jobs.images import IMAGE_ASPECT_RANGE, IMAGE_MAX_BYTES, IMAGE_MIN_SIDE

DEFAULT_MAX_EDGE = 2048  # Kling renders 1080p: more pixels only cost bytes and time
JPEG_QUALITY = 90
WHITE = (255, 255, 255)
# Pillow's names of what a person can hand us; the first two the API takes as they are.
SENDABLE = frozenset({"JPEG", "PNG"})
OPENABLE = SENDABLE | {"HEIF", "WEBP", "AVIF", "TIFF", "BMP", "GIF", "MPO"}
_TURNED = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height
_HIGH_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
_SENDABLE_MODES = frozenset({"RGB", "L", "P", "1"})  # CMYK, 16 bits, alpha are not


@functools.cache
def register_heif() -> None:
    """pillow-heif's opener, once per process (HEIC/HEIF; AVIF is Pillow's own)."""
    import pillow_heif

    pillow_heif.register_heif_opener()


@dataclass(frozen=True)
class Source:
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
        if self.orientation in _TURNED:
            return self.height, self.width
        return self.width, self.height


@dataclass(frozen=True)
class PictureSettings:
    """What a row asks of its pictures (``max_edge``, ``matte``, ``fit``, a ratio)."""

    max_edge: int = DEFAULT_MAX_EDGE
    matte: tuple[int, int, int] = WHITE
    fit: str | None = None  # "crop" or "pad": make the picture the target ratio
    ratio: float | None = None  # width / height wanted with ``fit`` (None: nearest allowed)


@dataclass(frozen=True)
class Conversion:
    """What is done to one picture, in order; nothing at all when ``as_is``."""

    source: Source
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

    def describe(self) -> str:
        """``HEIF 4032x3024 -> JPEG 2048x1536, turned by its EXIF`` (sizes in the listing
        come from the files)."""
        source = self.source
        if self.as_is:
            return f"{source.format} {source.width}x{source.height}, sent as it is"
        width, height = self.size
        done = []
        if self.turn:
            done.append("turned by its EXIF")
        if self.first_frame:
            done.append(f"first of {source.frames} frames")
        if self.matte is not None:
            done.append("transparency on #{:02x}{:02x}{:02x}".format(*self.matte))
        if self.to_8_bits:
            done.append("16 bits scaled to 8")
        if self.crop_to:
            done.append("centre-cropped")
        if self.pad_to:
            done.append("padded")
        said = f"{source.format} {source.width}x{source.height} -> {self.encode} {width}x{height}"
        return ", ".join([said, *done])


def plan_conversion(source: Source, settings: PictureSettings = PictureSettings()) -> Conversion:
    """What must change for ``source`` to be a first frame the API takes. Pure: the
    table test pins it, :func:`convert` carries it out."""
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
    needs = (
        source.format not in SENDABLE
        or turn
        or source.frames > 1
        or source.has_alpha
        or source.mode in _HIGH_BIT_MODES
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
        to_8_bits=source.mode in _HIGH_BIT_MODES,
        crop_to=crop_to,
        pad_to=pad_to,
        size=size,
        encode="PNG" if lossless else "JPEG",
        problem=problem,
    )


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


def source_of(image: Image.Image, size_bytes: int) -> Source:
    """What an opened picture tells before decoding (its header and EXIF)."""
    try:
        orientation = int(image.getexif().get(0x0112) or 1)
    except Exception:  # a damaged EXIF block: take the picture as stored
        orientation = 1
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    return Source(
        format=image.format or "",
        width=image.width,
        height=image.height,
        size_bytes=size_bytes,
        mode=image.mode,
        orientation=orientation,
        frames=getattr(image, "n_frames", 1),
        has_alpha=has_alpha,
    )


def convert(data: bytes, conversion: Conversion) -> bytes:
    """Carry out ``conversion`` on the picture in ``data``; the bytes to send."""
    if conversion.as_is:
        return data
    register_heif()
    with Image.open(io.BytesIO(data)) as opened:
        icc = opened.info.get("icc_profile")
        if conversion.first_frame:
            opened.seek(0)
        if conversion.encode == "JPEG" and conversion.crop_to is None and conversion.pad_to is None:
            opened.draft("RGB", _draft_box(conversion))  # JPEG only: decode small
        picture = ImageOps.exif_transpose(opened) if conversion.turn else opened.copy()
    picture = _eight_bits(picture) if conversion.to_8_bits else picture
    picture = _on_matte(picture, conversion.matte or WHITE)
    if conversion.crop_to:
        picture = ImageOps.fit(picture, conversion.crop_to, Image.Resampling.LANCZOS)
    if conversion.pad_to:
        canvas = Image.new("RGB", conversion.pad_to, conversion.matte or WHITE)
        canvas.paste(
            picture,
            ((canvas.width - picture.width) // 2, (canvas.height - picture.height) // 2),
        )
        picture = canvas
    if picture.size != conversion.size:
        picture = picture.resize(conversion.size, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if conversion.encode == "PNG":
        picture.save(out, "PNG", optimize=False, icc_profile=icc)
    else:
        picture.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True, icc_profile=icc)
    return out.getvalue()


def _draft_box(conversion: Conversion) -> tuple[int, int]:
    """The stored size libjpeg may decode down to (it only ever halves, never below)."""
    width, height = conversion.size
    return (height, width) if conversion.source.orientation in _TURNED else (width, height)


def _eight_bits(picture: Image.Image) -> Image.Image:
    """16-bit grey to 8 bits by scaling: Pillow's ``convert("L")`` clips every value over
    255, so a mid-grey scan would come out white."""
    return picture.convert("I").point(lambda value: value / 257).convert("L")


def _on_matte(picture: Image.Image, matte: tuple[int, int, int]) -> Image.Image:
    """RGB or L, transparency on the matte (never the colour hidden under it)."""
    if picture.mode in ("RGB", "L"):
        return picture
    if picture.mode == "P" or "transparency" in picture.info:
        picture = picture.convert("RGBA")
    if picture.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = picture.convert("RGBA")
        background = Image.new("RGB", rgba.size, matte)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return picture.convert("RGB")  # CMYK, YCbCr, ...
