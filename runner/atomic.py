"""Write a file so that a reader (or a crash) never sees half of it."""

from __future__ import annotations

from pathlib import Path


def write_text_atomically(path: Path, text: str) -> None:
    """Write to ``<name>.part`` and rename over ``path``: a report opened mid-write, or a
    crash mid-write, shows the old file or the new one, never a torn one."""
    partial = path.with_name(path.name + ".part")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
