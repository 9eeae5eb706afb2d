"""First-frame images, the same for every Kling model on Novita: what a local file must
be (a real PNG or JPEG, whole, at most 10 MB, both sides at least 300 px, aspect between
1:2.5 and 2.5:1), what a URL may look like, and what is sent (raw base64, or the URL).

The runner checks with these before spending; the simulator enforces the same. Novita's
v2.1 pages state only the size and the 300 px minimum; the stricter v2.6/v3.0 rules
(aspect ratio) are applied to every model, so a batch never fails on one model for a
frame another accepted.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import io
import re
import stat
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from jobs.problems import FieldProblem

IMAGE_FORMATS = {"PNG": "png", "JPEG": "jpeg"}  # Pillow format name -> what users call it
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# "At most 10 MB": the page does not say MB or MiB, so take the stricter reading; a
# file between the two would otherwise pass here and be rejected after queueing.
IMAGE_MAX_BYTES = 10_000_000
IMAGE_MIN_SIDE = 300
IMAGE_ASPECT_RANGE = (1 / 2.5, 2.5)  # width / height


def is_url(value: str) -> bool:
    """An http(s) URL; the scheme is case-insensitive (``HTTPS://`` is a URL too)."""
    return value[:8].lower().startswith(("http://", "https://"))


# Any other scheme (ftp://, s3://, file://) is neither a URL the API fetches nor a path.
_OTHER_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def check_image_reference(value: str) -> list[FieldProblem]:
    """An image given as a URL of another scheme is a problem, not a local path."""
    if _OTHER_SCHEME.match(value) and not is_url(value):
        return [
            FieldProblem(
                "image", value, "only http(s) URLs and local files: the API cannot fetch this"
            )
        ]
    return []


def orientation(width: int, height: int) -> str:
    return "landscape" if width > height else "portrait" if height > width else "square"


# --- images ---------------------------------------------------------------------


@dataclass(frozen=True)
class ImageFacts:
    """What validation learned about a local image; its digest feeds the fingerprint."""

    format: str
    width: int
    height: int
    size_bytes: int
    sha256: str
    shown_width: int = 0  # as a viewer shows it (after EXIF orientation)
    shown_height: int = 0


def check_image_bytes(data: bytes) -> tuple[ImageFacts | None, list[FieldProblem]]:
    """Check image bytes against every documented limit; used by runner and simulator."""
    problems: list[FieldProblem] = []
    if len(data) > IMAGE_MAX_BYTES:
        problems.append(
            FieldProblem(
                "image",
                f"{len(data)} bytes",
                f"is larger than {IMAGE_MAX_BYTES // 1_000_000} MB",
                "IMAGE_FILE_EXCEEDS_MAX_SIZE",
            )
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt, (width, height) = img.format or "", img.size
                damage = _load_problem(img)
                shown = _shown_size(img)  # after the load: a PNG's EXIF may follow its pixels
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        problems.append(FieldProblem("image", None, _bomb(exc, len(data)), "INVALID_IMAGE_SIZE"))
        return None, problems
    except (UnidentifiedImageError, OSError, ValueError):
        problems.append(
            FieldProblem(
                "image", None, "is not a readable PNG or JPEG image", "INVALID_IMAGE_FORMAT"
            )
        )
        return None, problems
    damage = damage or _verify_problem(data)
    if damage:
        problems.append(FieldProblem("image", None, damage, "INVALID_IMAGE_FORMAT"))
    if fmt not in IMAGE_FORMATS:
        problems.append(
            FieldProblem(
                "image", fmt, "must be a PNG or JPEG (.png, .jpg, .jpeg)", "INVALID_IMAGE_FORMAT"
            )
        )
    if min(width, height) < IMAGE_MIN_SIDE:
        problems.append(
            FieldProblem(
                "image",
                f"{width}x{height}",
                f"width and height must both be at least {IMAGE_MIN_SIDE} px",
                "INVALID_IMAGE_SIZE",
            )
        )
    low, high = IMAGE_ASPECT_RANGE
    if height and not low - 1e-9 <= width / height <= high + 1e-9:
        problems.append(
            FieldProblem(
                "image",
                f"{width}x{height}",
                "aspect ratio must be between 1:2.5 and 2.5:1",
                "INVALID_IMAGE_SIZE",
            )
        )
    facts = ImageFacts(
        format=IMAGE_FORMATS.get(fmt, fmt.lower()),
        width=width,
        height=height,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        shown_width=shown[0],
        shown_height=shown[1],
    )
    return facts, problems


def _bomb(exc: Exception, size: int) -> str:
    """Pillow refuses to open more pixels than ``Image.MAX_IMAGE_PIXELS`` (about 89
    million): a small file that decodes to gigabytes (a decompression bomb) would take
    the memory of the machine. Say so in our words, not Pillow's warning."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
    return (
        f"has {pixels} in {size:,} bytes, more than {Image.MAX_IMAGE_PIXELS:,} that can be "
        "opened safely (a decompression bomb, or a damaged header): export it smaller"
    )


def _load_problem(img: Image.Image) -> str | None:
    """Decode the whole image once: a header can be fine while the data is cut short
    (a copy that stopped early), and the API would take the task and fail it, paid.
    The one decode of a check: reading a PNG's EXIF afterwards costs nothing more
    (before, it decoded the picture a second time)."""
    try:
        img.load()
    except Exception as exc:  # Pillow raises many kinds for damaged data
        return _damaged(exc)
    return None


def _verify_problem(data: bytes) -> str | None:
    """Pillow's structure check (a PNG's chunk checksums), which decodes nothing."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    except Exception as exc:
        return _damaged(exc)
    return None


def _damaged(exc: Exception) -> str:
    return f"is damaged or cut short ({exc}): export it again"


# EXIF orientations that turn the picture by 90 degrees when it is shown.
_TURNED = frozenset({5, 6, 7, 8})


def _shown_size(img: Image.Image) -> tuple[int, int]:
    """The size as a viewer shows it: EXIF orientation can turn the stored picture."""
    try:
        orientation = img.getexif().get(0x0112)
    except Exception:  # a damaged EXIF block: show it as stored
        orientation = None
    width, height = img.size
    return (height, width) if orientation in _TURNED else (width, height)


def check_image_file(path: Path) -> tuple[ImageFacts | None, list[FieldProblem]]:
    """Check a local first-frame image; a missing or unreadable file is a problem, not a crash."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return None, [FieldProblem("image", str(path), "must be a .png, .jpg or .jpeg file")]
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block the read for ever
            return None, [FieldProblem("image", str(path), "is not a regular file")]
        size = info.st_size
        if size > IMAGE_MAX_BYTES:  # don't read a huge file just to reject it
            return None, [
                FieldProblem(
                    "image", f"{size} bytes", f"is larger than {IMAGE_MAX_BYTES // 1_000_000} MB"
                )
            ]
        data = path.read_bytes()
    except FileNotFoundError:
        return None, [FieldProblem("image", str(path), "file not found")]
    except OSError as exc:
        why = "is a symlink loop" if exc.errno == errno.ELOOP else f"cannot be read: {exc.strerror}"
        return None, [FieldProblem("image", str(path), why)]
    facts, problems = check_image_bytes(data)
    # "is damaged" names the file, not only the row: a glob or folder row has many.
    named = [replace(p, value=str(path)) if p.value is None else p for p in problems]
    return facts, named


def check_image_url(url: str) -> list[FieldProblem]:
    """A URL is not fetched here (that would be network during `validate`): only a path
    that plainly names another image format is refused. Extension-less CDN links pass;
    the API judges those."""
    suffix = Path(url.split("?", 1)[0].split("#", 1)[0]).suffix.lower()
    if suffix in _OTHER_IMAGE_SUFFIXES:
        return [FieldProblem("image", url, "must be a PNG or JPEG (.png, .jpg, .jpeg)")]
    return []


_OTHER_IMAGE_SUFFIXES = (".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".avif")


def image_payload(reference: str) -> str:
    """The value to send: URLs as they are, local files as raw base64.

    Raw means no ``data:image/png;base64,`` prefix: Kling's own API documents a prefixed
    value as a wrong input.
    """
    if is_url(reference):
        return reference
    return base64.b64encode(Path(reference).read_bytes()).decode("ascii")


def orientation_warning(image: ImageFacts | None, aspect_ratio: str | None) -> FieldProblem | None:
    """An image whose EXIF orientation turns it against the requested aspect ratio: the
    model may or may not apply EXIF, so the video may go the other way."""
    if image is None or not image.shown_width or not image.shown_height:
        return None
    shown = orientation(image.shown_width, image.shown_height)
    stored = orientation(image.width, image.height)
    wanted = {"16:9": "landscape", "9:16": "portrait"}.get(aspect_ratio or "")
    if not wanted or shown in (stored, wanted):
        return None
    return FieldProblem(
        "image",
        f"{image.width}x{image.height} shown {image.shown_width}x{image.shown_height}",
        f"its EXIF orientation shows it {shown}, but aspect_ratio is "
        f"{aspect_ratio} ({wanted}): check which way the video should go",
    )
