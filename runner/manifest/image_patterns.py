"""Images in bulk: a row whose image is a glob or a folder becomes one row per picture,
its id from the file's name, ``{caption}`` and ``{name}`` filled in its prompts.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from jobs.pictures import PICTURE_SUFFIXES
from runner.manifest.rows import Manifest, Problem, Row

# --- images in bulk --------------------------------------------------------------------

_GLOB = re.compile(r"[*?[]")


def with_image_patterns(manifest: Manifest) -> Manifest:
    """A row whose ``image`` is a glob (``frames/*.png``, ``shots/*/key.png``,
    ``**/*.jpg``) or a folder becomes one row per matching file, sorted, each with an
    id from its path under the pattern's fixed part (``<row id>-<name>``, or the name
    alone for a row without an id): adding a file later adds tasks and never renumbers
    the ones already paid for. A pattern that matches nothing is a problem."""
    rows: list[Row] = []
    problems = list(manifest.problems)
    patterns: dict[str, int] = {}
    for row in manifest.rows:
        image = row.values.get("image")
        found = _matches(manifest.base_dir, image) if isinstance(image, str) else None
        if found is None:
            rows.append(row)
            continue
        base, files = found
        patterns[str(image)] = len(files)

        def problem(rule: str, value: Any = image, row: Row = row, field: str = "image") -> None:
            problems.append(
                Problem(
                    file=str(manifest.path),
                    row=row.row_id,
                    line=row.line,
                    field=field,
                    value=value,
                    rule=rule,
                )
            )

        readable = []
        for file in files:
            if _utf8(str(file)):
                readable.append(file)
            else:
                problem("its name is not UTF-8 text: rename the file", _shown_name(file))
        if not files:
            problem(f"matches no picture ({', '.join(PICTURE_SUFFIXES)})")
        given = row.values.get("id")
        for file, name in zip(readable, _names_apart(base, readable), strict=True):
            row_id = f"{given}-{name}" if given not in (None, "") else name
            values = {**row.values, "image": str(file), "id": row_id}
            filled, stops = _fill_templates(values, file)
            values.update(filled)
            for field, shown, why in stops:
                problem(why, shown, field=field)
            rows.append(Row(row.number, row.line, values, row.defaulted - {"image"}))
    return replace(manifest, rows=rows, problems=problems, patterns=patterns)


# Prompts of a glob or folder row may name each file's own words: ``{caption}`` (the
# text of the same-name .txt beside the image, as captioning tools leave it) and
# ``{name}`` (the file's stem). Any other ``{word}`` is a problem; other braces are text.
TEMPLATED = ("prompt", "negative_prompt")
TEMPLATE_FIELDS = ("caption", "name")
_TEMPLATE = re.compile(r"\{(\w+)\}")


def _fill_templates(
    values: dict[str, Any], image: Path
) -> tuple[dict[str, Any], list[tuple[str, Any, str]]]:
    """The templated fields filled in for ``image``, and what stops that, as (field,
    value shown, why). A list of prompts (one task each) is filled item by item; the
    caption file is read once, when a field first names it."""
    filled: dict[str, Any] = {}
    stops: list[tuple[str, Any, str]] = []
    caption: tuple[str, str | None] | None = None
    for field in TEMPLATED:
        value = values.get(field)
        texts = value if isinstance(value, list) else [value]
        named = [n for t in texts if isinstance(t, str) for n in _TEMPLATE.findall(t)]
        unknown = [n for n in named if n not in TEMPLATE_FIELDS]
        if unknown:
            stops.append((field, value, _unknown_field(unknown[0])))
            continue
        if not named:
            continue
        words = {"name": image.stem}
        if "caption" in named:
            caption = caption or _caption(image)
            text, why = caption
            if why is not None:
                stops.append((field, _shown_name(image), why))
                continue
            words["caption"] = text
        done = [_filled(t, words) if isinstance(t, str) else t for t in texts]
        filled[field] = done if isinstance(value, list) else done[0]
    return filled, stops


def _unknown_field(name: str) -> str:
    close = difflib.get_close_matches(name, TEMPLATE_FIELDS, n=1)
    hint = f" (did you mean {{{close[0]}}}?)" if close else ""
    known = ", ".join("{" + n + "}" for n in TEMPLATE_FIELDS)
    return f"{{{name}}} is not a field a prompt can name{hint}: {known} are"


def _filled(text: str, words: dict[str, str]) -> str:
    return _TEMPLATE.sub(lambda match: words[match.group(1)], text)


def _caption(image: Path) -> tuple[str, str | None]:
    """The text of ``<stem>.txt`` beside ``image``, or why there is none."""
    beside = image.with_suffix(".txt")
    try:
        text = beside.read_text(encoding="utf-8-sig").strip()
    except FileNotFoundError:
        return "", f"{{caption}} needs {beside.name} beside the image, and there is none"
    except (OSError, UnicodeDecodeError) as exc:
        return "", f"{{caption}}: {beside.name} cannot be read as UTF-8 text ({exc})"
    if not text:
        return "", f"{{caption}}: {beside.name} is empty"
    return " ".join(text.split()), None


# An id from a file name keeps letters of any script (a CJK name must not become "_").
_NOT_IN_ID = re.compile(r"[^\w.-]+")


def _names_apart(base: Path, files: list[Path]) -> list[str]:
    """Each file's id part: its path under ``base`` without the suffix (``cat``,
    ``shot1_key``), or with it where two files would share one (``cat.png`` and
    ``cat.jpg``); compared without case, as macOS and Windows disks compare names."""
    stems = [_NOT_IN_ID.sub("_", str(f.relative_to(base).with_suffix(""))) for f in files]
    taken: dict[str, int] = {}
    for stem in stems:
        taken[stem.casefold()] = taken.get(stem.casefold(), 0) + 1
    return [
        _NOT_IN_ID.sub("_", str(f.relative_to(base))) if taken[stem.casefold()] > 1 else stem
        for f, stem in zip(files, stems, strict=True)
    ]


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a byte the file system holds that is not UTF-8
        return False
    return True


def _shown_name(path: Path) -> str:
    return path.name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _matches(base_dir: Path, image: str) -> tuple[Path, list[Path]] | None:
    """The fixed folder a pattern starts from and the image files it names, sorted;
    None for a single image. ``*`` may stand in any part, ``**`` for any depth."""
    if "://" in image or (not _GLOB.search(image) and image.lower().endswith(PICTURE_SUFFIXES)):
        return None  # a URL, or one picture: no need to ask the disk (a stat per row)
    path = Path(image).expanduser()
    # Absolute: the rows made here name their files whatever folder the command runs in.
    path = (path if path.is_absolute() else base_dir / path).absolute()
    if path.is_dir():
        found = [p for p in path.iterdir() if p.suffix.lower() in PICTURE_SUFFIXES]
        base = path
    elif _GLOB.search(image):
        parts = path.parts
        fixed = next(i for i, part in enumerate(parts) if _GLOB.search(part))
        base = Path(*parts[:fixed])
        pattern = str(Path(*parts[fixed:]))
        found = [p for p in base.glob(pattern) if p.suffix.lower() in PICTURE_SUFFIXES]
    else:
        return None
    return base, sorted(p for p in found if p.is_file())
