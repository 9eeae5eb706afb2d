"""Each source picture's thumbnail, made once per run folder and kept in
``.thumbs/``: the page shows it beside each card, the contact sheet opens each
tile with it.

Decoding a 12 MP phone photo takes 15-25 ms even in JPEG's draft mode, so a night's end
that decoded every source again would spend minutes on 20,000 of them: the thumbnail is
made when the task's video is downloaded (in the disk thread, beside its poster) or, for
a task without one, the first time a report asks, and read afterwards (~0.2 ms). Its
name comes from the picture's path, size and modification time, so an edited picture
gets a new one.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from PIL import Image, ImageOps

from jobs.images import is_url

THUMBS_DIR = ".thumbs"  # in the run folder
THUMB_PX = 128  # the contact sheet's cell; the page shows it at 72 CSS px (144 on HiDPI)
THUMB_QUALITY = 80


def thumbnail_path(run_dir: Path, image: str) -> Path | None:
    """Where ``image``'s thumbnail is kept; None for a URL, text to video (no image) or
    a picture no longer there."""
    if not image or is_url(image):
        return None
    try:
        found = os.stat(image)
    except OSError:
        return None
    identity = f"{Path(image).resolve()}\0{found.st_size}\0{found.st_mtime_ns}"
    return run_dir / THUMBS_DIR / (hashlib.sha256(identity.encode()).hexdigest()[:32] + ".jpg")


def source_thumbnail(run_dir: Path, image: str) -> Path | None:
    """``image``'s thumbnail, made now if it is not kept yet; None when there is none to
    make (see :func:`thumbnail_path`) or the picture cannot be read."""
    path = thumbnail_path(run_dir, image)
    if path is None or path.is_file():
        return path
    picture = small_picture(Path(image), THUMB_PX)
    if picture is None:
        return None
    # Two sheet workers may make the same one: each writes its own partial file.
    partial = path.with_name(f"{path.name}.{os.getpid()}.part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        picture.save(partial, "JPEG", quality=THUMB_QUALITY)
        os.replace(partial, path)
    except OSError:
        partial.unlink(missing_ok=True)
        return None  # a full or read-only disk: the reports go on without it
    return path


def small_picture(path: Path, size: int = THUMB_PX) -> Image.Image | None:
    """A local picture at most ``size`` on a side, turned as its EXIF says (JPEG's
    draft mode decodes it small); None if it cannot be read (moved since the run)."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (size, size))
            picture = ImageOps.exif_transpose(image).convert("RGB")
            picture.thumbnail((size, size))
            return picture
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
