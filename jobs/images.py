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
import hashlib
import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from jobs.problems import FieldProblem

IMAGE_FORMATS = {"PNG": "png", "JPEG": "jpeg"}  # Pillow format name -> what users call it
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
                damage = load_problem(img)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        problems.append(
            FieldProblem("image", None, bomb_message(exc, len(data)), "INVALID_IMAGE_SIZE")
        )
        return None, problems
    except (UnidentifiedImageError, OSError, ValueError):
        problems.append(
            FieldProblem(
                "image", None, "is not a readable PNG or JPEG image", "INVALID_IMAGE_FORMAT"
            )
        )
        return None, problems
    damage = damage or verify_problem(data)
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
    )
    return facts, problems


def bomb_message(exc: Exception, size: int) -> str:
    """Pillow refuses to open more pixels than ``Image.MAX_IMAGE_PIXELS`` (about 89
    million): a small file that decodes to gigabytes (a decompression bomb) would take
    the memory of the machine. Say so in our words, not Pillow's warning."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
    return (
        f"has {pixels} in {size:,} bytes, more than {Image.MAX_IMAGE_PIXELS:,} that can be "
        "opened safely (a decompression bomb, or a damaged header): export it smaller"
    )


def load_problem(img: Image.Image) -> str | None:
    """Decode the image (a JPEG after ``draft`` at a fraction of its size): a header can
    be fine while the data is cut short (a copy that stopped early), and the API would
    take the task and fail it, paid."""
    try:
        img.load()
    except Exception as exc:  # Pillow raises many kinds for damaged data
        return damaged_message(exc)
    return None


def verify_problem(data: bytes) -> str | None:
    """Pillow's structure check (a PNG's chunk checksums), which decodes nothing."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    except Exception as exc:
        return damaged_message(exc)
    return None


def damaged_message(exc: Exception) -> str:
    return f"is damaged or cut short ({exc}): export it again"


def check_image_url(url: str) -> list[FieldProblem]:
    """A URL is not fetched here (that would be network during `validate`): only a path
    that plainly names another image format is refused. Extension-less CDN links pass;
    the API judges those."""
    suffix = Path(url.split("?", 1)[0].split("#", 1)[0]).suffix.lower()
    if suffix in _OTHER_IMAGE_SUFFIXES:
        return [
            FieldProblem(
                "image",
                url,
                "must be a PNG or JPEG: a URL is sent as it is, so it cannot be converted "
                "here (download it and name the file instead)",
            )
        ]
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
