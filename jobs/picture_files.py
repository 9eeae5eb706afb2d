"""The pictures people have, opened and converted with Pillow (and pillow-heif, whose
opener is registered here once): a file read once (its digest, what opening it tells,
whether it is whole) and a :class:`~jobs.pictures.Conversion` done. What must be done
is decided in ``jobs.pictures``, a pure function; this module does it.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import json
import stat
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from jobs.images import (
    bomb_message,
    load_problem,
    verify_problem,
)
from jobs.pictures import (
    JPEG_QUALITY,
    OPENABLE,
    PICTURE_MAX_BYTES,
    TURNED,
    WHITE,
    Conversion,
    PictureFacts,
)


@functools.cache
def register_heif() -> None:
    """pillow-heif's opener, once per process (HEIC/HEIF; AVIF is Pillow's own)."""
    import pillow_heif

    pillow_heif.register_heif_opener()


def facts_of(image: Image.Image, size_bytes: int) -> PictureFacts:
    """What an opened picture tells before decoding (its header and EXIF)."""
    orientation = 1
    # A PNG's getexif() decodes the whole picture when its header has no eXIf chunk
    # (looking for one after the pixels): read the tag only when the header has it.
    if image.format != "PNG" or "exif" in image.info:
        try:
            orientation = int(image.getexif().get(0x0112) or 1)
        except Exception:  # a damaged EXIF block: take the picture as stored
            orientation = 1
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    return PictureFacts(
        format=image.format or "",
        width=image.width,
        height=image.height,
        size_bytes=size_bytes,
        mode=image.mode,
        orientation=orientation,
        frames=getattr(image, "n_frames", 1),
        has_alpha=has_alpha,
    )


# --- reading a file once ---------------------------------------------------------------


@dataclass(frozen=True)
class PictureFile:
    """One reading of a picture file, whatever its rows ask of it: its content's digest
    (the fingerprint's part), what it is, and why it cannot be used, if it cannot.
    Plain data, so that it crosses a process pool and a cache as JSON."""

    path: str
    sha256: str = ""
    facts: PictureFacts | None = None
    problem: str | None = None
    code: str | None = None  # the API's error code for the same problem, where it has one

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PictureFile:
        data = json.loads(text)
        facts = data.pop("facts", None) or data.pop("source", None)  # its name before 2026-12-05
        data["facts"] = None if facts is None else PictureFacts(**facts)
        return cls(**data)


def open_picture(path: Path) -> PictureFile:
    """Read a local picture once: a missing, unreadable, huge, damaged or unknown file
    is a problem naming it, never a crash."""
    where = str(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block the read for ever
            return PictureFile(where, problem="is not a regular file")
        if info.st_size > PICTURE_MAX_BYTES:  # don't read a disk image to refuse it
            return PictureFile(
                where,
                problem=f"is {info.st_size:,} bytes: more than "
                f"{PICTURE_MAX_BYTES // 1_000_000} MB is no picture this reads",
                code="IMAGE_FILE_EXCEEDS_MAX_SIZE",
            )
        data = path.read_bytes()
    except FileNotFoundError:
        return PictureFile(where, problem="file not found")
    except OSError as exc:
        why = "is a symlink loop" if exc.errno == errno.ELOOP else f"cannot be read: {exc.strerror}"
        return PictureFile(where, problem=why)
    source, problem, code = inspect_bytes(data)
    return PictureFile(where, hashlib.sha256(data).hexdigest(), source, problem, code)


def inspect_bytes(data: bytes) -> tuple[PictureFacts | None, str | None, str | None]:
    """What the picture in ``data`` is, and whether it is whole: (source, problem, code).

    Whole means every byte of its data decodes. A JPEG is decoded at an eighth of its
    size (libjpeg still reads every scan, so a cut file is found, at a fraction of the
    time); a PNG's chunks are checked by their CRCs, which decodes nothing; the other
    formats are decoded (they are converted anyway)."""
    register_heif()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                source = facts_of(image, len(data))
                if source.format not in OPENABLE:
                    return (
                        source,
                        f"is a {source.format} picture, which is not read here",
                        ("INVALID_IMAGE_FORMAT"),
                    )
                damage = _decode_problem(image)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        return None, bomb_message(exc, len(data)), "INVALID_IMAGE_SIZE"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None, f"is not a picture this reads ({_KINDS})", "INVALID_IMAGE_FORMAT"
    if damage is None and source.format == "PNG":
        damage = verify_problem(data)
    return source, damage, "INVALID_IMAGE_FORMAT" if damage else None


_KINDS = "JPEG, PNG, HEIC, WebP, AVIF, TIFF, BMP, GIF"


def _decode_problem(image: Image.Image) -> str | None:
    if image.format == "PNG":
        return None  # its chunks' CRCs instead (verify_problem), which decode nothing
    if image.format in ("JPEG", "MPO"):
        image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
    return load_problem(image)


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
        # reducing_gap: a box reduction first, then Lanczos over the last 3x (Pillow: as
        # good to the eye, several times faster on a camera file).
        picture = picture.resize(conversion.size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    out = io.BytesIO()
    if conversion.encode == "PNG":
        picture.save(out, "PNG", optimize=False, icc_profile=icc)
    else:
        picture.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True, icc_profile=icc)
    return out.getvalue()


def _draft_box(conversion: Conversion) -> tuple[int, int]:
    """The stored size libjpeg may decode down to (it only ever halves, never below)."""
    width, height = conversion.size
    return (height, width) if conversion.facts.orientation in TURNED else (width, height)


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
