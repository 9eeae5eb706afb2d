"""Write a file so that a reader (or a crash) never sees half of it."""

from __future__ import annotations

from pathlib import Path


def write_text_atomically(path: Path, text: str) -> None:
    """Write to ``<name>.part`` and rename over ``path``: a report opened mid-write, or a
    crash mid-write, shows the old file or the new one, never a torn one."""
    write_bytes_atomically(path, text.encode("utf-8"))


def write_bytes_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    partial.replace(path)
