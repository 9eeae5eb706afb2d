"""Write a file so that a reader (or a crash) never sees half of it."""

from __future__ import annotations

import os
from pathlib import Path


def write_text_atomically(path: Path, text: str) -> None:
    """Write to ``<name>.part`` and rename over ``path``: a report opened mid-write, or a
    crash mid-write, shows the old file or the new one, never a torn one."""
    write_bytes_atomically(path, text.encode("utf-8"))


def write_bytes_atomically(path: Path, data: bytes, *, durable: bool = False) -> None:
    """``durable``: fsync before the rename, so that a power cut leaves the old file or
    the whole new one (for what money depends on; reports can be written again)."""
    partial = path.with_name(path.name + ".part")
    with open(partial, "wb") as out:
        out.write(data)
        if durable:
            out.flush()
            os.fsync(out.fileno())
    partial.replace(path)
