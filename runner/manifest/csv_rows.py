"""A CSV manifest read into rows: its delimiter found (a CSV saved with semicolons),
its header checked, a prompt holding a line separator said, not guessed at.
"""

from __future__ import annotations

import csv
import difflib
import io
from pathlib import Path
from typing import Any

from runner.core.errors import ManifestError
from runner.manifest.rows import Manifest, Problem, Row


def load_csv(path: Path, text: str, overrides: dict[str, Any]) -> Manifest:
    name = str(path)
    # A file object, not str.splitlines: a prompt may hold U+2028, NEL or a form feed,
    # which splitlines takes for line ends; csv itself knows only \r and \n.
    delimiter = delimiter_of(text)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [h.strip() for h in (reader.fieldnames or [])]
    twice = sorted({h for h in header if h and header.count(h) > 1})
    if twice:
        raise ManifestError(
            [
                Problem(
                    file=name,
                    line=1,
                    rule=f"the header names {', '.join(twice)} more than once: a row's value "
                    "would silently be the last column's; keep one column each",
                )
            ]
        )
    # Required columns, unless --set gives them to every row; a text-to-video batch
    # (a ``model`` column or --set model=...) needs no image.
    needed = ("prompt",) if "model" in header or "model" in overrides else ("image", "prompt")
    missing = [col for col in needed if col not in header and col not in overrides]
    if missing:
        raise ManifestError([Problem(file=name, line=1, rule=_header_rule(header, missing))])
    rows, problems = [], []
    for number, record in enumerate(reader, start=1):
        line = reader.line_num
        if None in record:
            problems.append(
                Problem(
                    file=name, row=str(number), line=line, rule="has more cells than the header"
                )
            )
            continue
        values = {k.strip(): v for k, v in record.items() if v is not None and v.strip() != ""}
        if not values:  # a blank line, or Excel's leftover row of only commas
            continue
        rows.append(Row(number, line, {**overrides, **values}, frozenset(overrides) - set(values)))
    return Manifest(path, rows, problems)


def delimiter_of(text: str) -> str:
    """Comma, or what the header line plainly uses instead (Excel in many European
    locales saves CSV with semicolons; some tools use tabs)."""
    header = text.split("\n", 1)[0]
    counts = {sep: header.count(sep) for sep in (",", ";", "\t")}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] > counts[","] else ","


def _header_rule(header: list[str], missing: list[str]) -> str:
    rule = (
        "the first line must be a header naming the columns "
        f"(e.g. id,image,prompt,duration); missing: {', '.join(missing)}"
    )
    hints = []
    for column in missing:
        close = difflib.get_close_matches(column, header, n=1, cutoff=0.6)
        if close:
            hints.append(f"'{close[0]}' for '{column}'")
    if hints:
        rule += f" (did you mean {', '.join(hints)}?)"
    return rule
