"""Read a manifest file, YAML or CSV, into rows, saying what is wrong where it is.

Both formats get the same care: the line where a problem starts, and the things a
format reads silently differently from what a person wrote (YAML's ``on:`` and
``16:9``, a key given twice; a CSV saved with semicolons, in Windows-1252, with a
prompt holding a line separator) are said, not guessed at.
"""

from __future__ import annotations

import csv
import difflib
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from runner.errors import ManifestError
from runner.manifest import Manifest, Problem, Row

YAML_SUFFIXES = (".yaml", ".yml")


def load(path: Path, overrides: Mapping[str, Any] | None = None) -> Manifest:
    """Read a manifest file; ``overrides`` act as defaults that beat the file's own."""
    overrides = dict(overrides or {})
    if path.is_dir():
        raise ManifestError(
            [Problem(str(path), None, None, None, None, "is a folder: name a .yaml or .csv file")]
        )
    if not path.is_file():
        raise ManifestError([Problem(str(path), None, None, None, None, "file not found")])
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ManifestError(
            [Problem(str(path), None, None, None, None, f"cannot be read: {exc.strerror}")]
        ) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ManifestError(
            [
                Problem(
                    str(path),
                    None,
                    line,
                    None,
                    None,
                    f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} on this line; likely "
                    "saved as Windows-1252 or Latin-1): save it as UTF-8 (Excel: Save As, "
                    "'CSV UTF-8'; an editor: encoding UTF-8)",
                )
            ]
        ) from None
    if path.suffix.lower() in YAML_SUFFIXES:
        return _with_image_patterns(_load_yaml(path, text, overrides))
    if path.suffix.lower() == ".csv":
        return _with_image_patterns(_load_csv(path, text, overrides))
    raise ManifestError(
        [Problem(str(path), None, None, None, None, "must be a .yaml, .yml or .csv file")]
    )


def _load_yaml(path: Path, text: str, overrides: dict[str, Any]) -> Manifest:
    name = str(path)
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ManifestError([_yaml_problem(name, exc)]) from None

    defaults: dict[str, Any] = {}
    prices: dict[str, Any] = {}
    rows_node: yaml.Node | None = root
    if isinstance(data, dict):
        unknown = sorted(str(k) for k in set(data) - {"defaults", "rows", "prices"})
        if unknown or "rows" not in data:
            rule = "top level takes 'defaults', 'prices' and 'rows'" + (
                f"; unknown: {', '.join(map(str, unknown))}" if unknown else "; 'rows' is missing"
            )
            raise ManifestError([Problem(name, None, 1, None, None, rule)])
        defaults = data.get("defaults") or {}
        if not isinstance(defaults, dict):
            raise ManifestError(
                [Problem(name, None, None, "defaults", None, "must be a mapping of field: value")]
            )
        prices = data.get("prices") or {}
        if not isinstance(prices, dict):
            raise ManifestError(
                [Problem(name, None, None, "prices", None, "must be a mapping of tier: USD")]
            )
        data = data["rows"]
        rows_node = _child(root, "rows")
    if not isinstance(data, list):
        raise ManifestError(
            [Problem(name, None, 1, None, None, "must be a list of rows, or defaults + rows")]
        )

    assert rows_node is not None and root is not None  # parsed above: data is a list
    lines = [item.start_mark.line + 1 for item in rows_node.value]
    defaults_node = _child(root, "defaults")
    merged_defaults = {**_without(defaults, defaults_node), **overrides}
    problems = _yaml_mapping_problems(name, root)
    rows = []
    for number, (item, node, line) in enumerate(
        zip(data, rows_node.value, lines, strict=True), start=1
    ):
        if not isinstance(item, dict):
            problems.append(
                Problem(
                    name, str(number), line, None, None, "a row must be a mapping of field: value"
                )
            )
            continue
        own = _without(item, node)
        rows.append(
            Row(number, line, {**merged_defaults, **own}, frozenset(merged_defaults) - set(own))
        )
    return Manifest(path, rows, problems, prices)


def _child(node: yaml.Node | None, name: str) -> yaml.Node | None:
    """The value node under ``name`` in a top-level mapping, or None."""
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((v for k, v in node.value if k.value == name), None)


def _text_keys(mapping: dict[Any, Any]) -> dict[str, Any]:
    """Only text keys: the others are reported (``_yaml_mapping_problems``) and dropped,
    so that the checks that follow compare names with names."""
    return {k: v for k, v in mapping.items() if isinstance(k, str)}


def _yaml_problem(name: str, exc: yaml.YAMLError) -> Problem:
    """Where the trouble *started* (an unclosed quote opens on line 4, not at the end of
    the file where the parser gives up), and what the parser said."""
    start = getattr(exc, "context_mark", None)
    found = getattr(exc, "problem_mark", None)
    mark = start or found
    parts = [getattr(exc, "context", None), getattr(exc, "problem", None)]
    detail = ": ".join(str(p) for p in parts if p) or str(exc)
    if start is not None and found is not None and found.line != start.line:
        detail += f" (noticed at line {found.line + 1})"
    return Problem(
        name, None, mark.line + 1 if mark else None, None, None, f"is not valid YAML: {detail}"
    )


# A plain (unquoted) scalar like 16:9 is a base-60 number to YAML 1.1: 16:9 reads as 969.
_SEXAGESIMAL = re.compile(r"^[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+$")


def _yaml_mapping_problems(name: str, root: yaml.Node) -> list[Problem]:
    """What YAML reads silently and differently from what was written: a key given twice
    in one mapping (the last would win), a key that is not text (``1:``, or ``on:``,
    which YAML reads as true), and an unquoted ratio such as ``16:9`` (a number to YAML)."""
    problems: list[Problem] = []
    for node in _mappings(root):
        seen: dict[object, int] = {}
        for key, value in node.value:
            line = key.start_mark.line + 1
            if not (key.tag == "tag:yaml.org,2002:str" and isinstance(key, yaml.ScalarNode)):
                shown = key.value if isinstance(key, yaml.ScalarNode) else "(a structure)"
                problems.append(
                    Problem(
                        name,
                        None,
                        line,
                        str(shown),
                        None,
                        "a field name must be text: "
                        f"YAML reads {shown} as a {key.tag.rsplit(':', 1)[-1]}; quote it",
                    )
                )
                continue
            if key.value in seen:
                problems.append(
                    Problem(
                        name,
                        None,
                        line,
                        key.value,
                        None,
                        f"is given twice in one mapping (first at line {seen[key.value]}); "
                        "YAML would silently keep the last",
                    )
                )
            seen.setdefault(key.value, line)
            if key.value in _base60_keys(node):
                problems.append(
                    Problem(
                        name,
                        None,
                        value.start_mark.line + 1,
                        key.value,
                        value.value,
                        f'YAML reads it unquoted as a number; write "{value.value}" in quotes',
                    )
                )
    return problems


def _base60_keys(node: yaml.Node) -> set[str]:
    """Keys of a mapping whose value is an unquoted ratio YAML reads as a number: the
    problem is said once, and the value is dropped, so no second message about 969."""
    if not isinstance(node, yaml.MappingNode):
        return set()
    return {
        key.value
        for key, value in node.value
        if isinstance(key, yaml.ScalarNode)
        and isinstance(value, yaml.ScalarNode)
        and value.style is None
        and value.tag != "tag:yaml.org,2002:str"
        and _SEXAGESIMAL.match(value.value)
    }


def _without(mapping: dict[Any, Any], node: yaml.Node | None) -> dict[str, Any]:
    """Text keys only, less the unquoted ratios (see :func:`_base60_keys`)."""
    dropped = _base60_keys(node) if node is not None else set()
    return {k: v for k, v in _text_keys(mapping).items() if k not in dropped}


def _mappings(node: yaml.Node) -> Iterable[yaml.MappingNode]:
    if isinstance(node, yaml.MappingNode):
        yield node
        for _, value in node.value:
            yield from _mappings(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _mappings(item)


def _load_csv(path: Path, text: str, overrides: dict[str, Any]) -> Manifest:
    name = str(path)
    # A file object, not str.splitlines: a prompt may hold U+2028, NEL or a form feed,
    # which splitlines takes for line ends; csv itself knows only \r and \n.
    delimiter = _delimiter(text)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [h.strip() for h in (reader.fieldnames or [])]
    # Required columns, unless --set gives them to every row; a text-to-video batch
    # (a ``model`` column or --set model=...) needs no image.
    needed = ("prompt",) if "model" in header or "model" in overrides else ("image", "prompt")
    missing = [col for col in needed if col not in header and col not in overrides]
    if missing:
        raise ManifestError([Problem(name, None, 1, None, None, _header_rule(header, missing))])
    rows, problems = [], []
    for number, record in enumerate(reader, start=1):
        line = reader.line_num
        if None in record:
            problems.append(
                Problem(name, str(number), line, None, None, "has more cells than the header")
            )
            continue
        values = {k.strip(): v for k, v in record.items() if v is not None and v.strip() != ""}
        if not values:  # a blank line, or Excel's leftover row of only commas
            continue
        rows.append(Row(number, line, {**overrides, **values}, frozenset(overrides) - set(values)))
    return Manifest(path, rows, problems)


def _delimiter(text: str) -> str:
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


# --- images in bulk --------------------------------------------------------------------

_GLOB = re.compile(r"[*?[]")
IMAGE_FILES = (".png", ".jpg", ".jpeg")


def _with_image_patterns(manifest: Manifest) -> Manifest:
    """A row whose ``image`` is a glob (``frames/*.png``) or a folder becomes one row per
    matching file, sorted, each with an id from its file name (``<row id>-<name>``, or
    the name alone for a row without an id): adding a file later adds tasks and never
    renumbers the ones already paid for. A pattern that matches nothing is a problem."""
    rows: list[Row] = []
    problems = list(manifest.problems)
    patterns: dict[str, int] = {}
    for row in manifest.rows:
        image = row.values.get("image")
        files = _matches(manifest.base_dir, image) if isinstance(image, str) else None
        if files is None:
            rows.append(row)
            continue
        patterns[str(image)] = len(files)
        if not files:
            problems.append(
                Problem(
                    str(manifest.path),
                    row.row_id,
                    row.line,
                    "image",
                    image,
                    "matches no .png, .jpg or .jpeg file",
                )
            )
        given = row.values.get("id")
        for file in files:
            stem = re.sub(r"[^A-Za-z0-9._-]+", "_", file.stem)
            row_id = f"{given}-{stem}" if given not in (None, "") else stem
            values = {**row.values, "image": str(file), "id": row_id}
            rows.append(Row(row.number, row.line, values, row.defaulted - {"image"}))
    return replace(manifest, rows=rows, problems=problems, patterns=patterns)


def _matches(base_dir: Path, image: str) -> list[Path] | None:
    """The image files a pattern or folder names, sorted; None for a single image."""
    if "://" in image:
        return None
    path = Path(image).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if path.is_dir():
        found = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_FILES]
    elif _GLOB.search(image):
        found = [p for p in path.parent.glob(path.name) if p.suffix.lower() in IMAGE_FILES]
    else:
        return None
    return sorted(p for p in found if p.is_file())
