"""Read a manifest file, YAML or CSV, into rows, saying what is wrong where it is.

Both formats get the same care: the line where a problem starts, and the things a
format reads silently differently from what a person wrote (YAML's ``on:`` and
``16:9``, a key given twice; a CSV saved with semicolons, in Windows-1252, with a
prompt holding a line separator) are said, not guessed at.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner.core.errors import ManifestError
from runner.manifest.csv_rows import delimiter_of, load_csv
from runner.manifest.image_patterns import with_image_patterns
from runner.manifest.rows import Manifest, Problem, gc_paused
from runner.manifest.yaml_rows import load_yaml

YAML_SUFFIXES = (".yaml", ".yml")


def load(path: Path, overrides: Mapping[str, Any] | None = None) -> Manifest:
    """Read a manifest file; ``overrides`` act as defaults that beat the file's own."""
    overrides = dict(overrides or {})
    if str(path) == STDIN:
        return _load_stdin(overrides)
    if path.is_dir():
        raise ManifestError(
            [Problem(file=str(path), rule="is a folder: name a .yaml or .csv file")]
        )
    if not path.is_file():
        raise ManifestError([Problem(file=str(path), rule="file not found")])
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ManifestError(
            [Problem(file=str(path), rule=f"cannot be read: {exc.strerror}")]
        ) from None
    text = _text(path, raw)
    with gc_paused():  # a million small objects at once: see gc_paused
        if path.suffix.lower() in YAML_SUFFIXES:
            return with_image_patterns(load_yaml(path, text, overrides))
        if path.suffix.lower() == ".csv":
            return with_image_patterns(load_csv(path, text, overrides))
    raise ManifestError([Problem(file=str(path), rule="must be a .yaml, .yml or .csv file")])


STDIN = "-"


def _load_stdin(overrides: dict[str, Any]) -> Manifest:
    """``kling-batch validate -``: a manifest piped in (``generate | kling-batch run -``),
    YAML or, when its first line reads as a header of names, CSV; paths in it are
    relative to the current folder."""
    path = Path("<stdin>")
    text = _text(path, sys.stdin.buffer.read())
    first = next((line for line in text.splitlines() if line.strip()), "")
    if ":" not in first and delimiter_of(first) in first:
        return with_image_patterns(load_csv(path, text, overrides))
    return with_image_patterns(load_yaml(path, text, overrides))


def _text(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ManifestError(
            [
                Problem(
                    file=str(path),
                    line=line,
                    rule=f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} on this line; likely "
                    "saved as Windows-1252 or Latin-1): save it as UTF-8 (Excel: Save As, "
                    "'CSV UTF-8'; an editor: encoding UTF-8)",
                )
            ]
        ) from None
