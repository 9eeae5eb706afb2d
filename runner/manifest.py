"""Load a manifest (YAML or CSV) and expand its rows into tasks with stable keys.

Expansion rules (one row can become several tasks):
- a list value expands into one task per value; several lists combine as a product;
  ``voice_list`` is itself a list, so only a list *of lists* expands it;
- ``repeat: N`` runs every combination N times.

Task keys are ``<row id>/<n>``, numbered with ``repeat`` as the *outer* loop, so raising
``repeat`` only appends keys and never renumbers tasks that were already paid for.
Whatever else changes a task is caught by its request fingerprint (see ``plan``).
"""

from __future__ import annotations

import csv
import difflib
import io
import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runner.errors import ManifestError

ROW_ONLY_FIELDS = ("id", "repeat")
MAX_REPEAT = 1000
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a manifest, located as precisely as we can."""

    file: str
    row: str | None
    line: int | None
    field: str | None
    value: Any
    rule: str

    def __str__(self) -> str:
        text = self.file + (f":{self.line}" if self.line else "")
        if self.row is not None:
            text += f": row '{self.row}'"
        if self.field:
            shown = _show(self.value)
            text += f": {self.field}" + (f" = {shown}" if shown else "")
        return f"{text}: {self.rule}"


def _show(value: Any) -> str:
    if value is None:
        return ""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Row:
    """One manifest row with the defaults already applied (values still raw)."""

    number: int
    line: int | None
    values: dict[str, Any]

    @property
    def row_id(self) -> str:
        given = self.values.get("id")
        return str(given).strip() if given not in (None, "") else str(self.number)


@dataclass(frozen=True)
class Manifest:
    path: Path
    rows: list[Row]
    # Problems found while reading that still let the other rows be checked.
    problems: list[Problem] = field(default_factory=list)
    # `prices:` at the top of a YAML manifest: USD per second by tier, checked by the job.
    prices: dict[str, Any] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        return self.path.parent


@dataclass(frozen=True)
class TaskSpec:
    """One task before validation: its key, where it came from, and its raw values."""

    key: str
    row_id: str
    file: str
    line: int | None
    values: dict[str, Any]

    @property
    def source(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


def parse_overrides(items: Iterable[str], option: str = "--set") -> dict[str, Any]:
    """``--set key=value`` pairs; values are read as YAML scalars (10, false, 0.7)."""
    overrides: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"{option} expects key=value, got {item!r}")
        try:
            overrides[name.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            overrides[name.strip()] = raw
    return overrides


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
        return _load_yaml(path, text, overrides)
    if path.suffix.lower() == ".csv":
        return _load_csv(path, text, overrides)
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
    rows_node = root
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
        rows_node = next(v for k, v in root.value if k.value == "rows")
    if not isinstance(data, list):
        raise ManifestError(
            [Problem(name, None, 1, None, None, "must be a list of rows, or defaults + rows")]
        )

    lines = [item.start_mark.line + 1 for item in rows_node.value]
    merged_defaults = {**_text_keys(defaults), **overrides}
    problems = _yaml_mapping_problems(name, root)
    rows = []
    for number, (item, line) in enumerate(zip(data, lines, strict=True), start=1):
        if not isinstance(item, dict):
            problems.append(
                Problem(
                    name, str(number), line, None, None, "a row must be a mapping of field: value"
                )
            )
            continue
        rows.append(Row(number, line, {**merged_defaults, **_text_keys(item)}))
    return Manifest(path, rows, problems, prices)


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
            if (
                isinstance(value, yaml.ScalarNode)
                and value.style is None
                and value.tag != "tag:yaml.org,2002:str"
                and _SEXAGESIMAL.match(value.value)
            ):
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
    missing = [col for col in ("image", "prompt") if col not in header]
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
        rows.append(Row(number, line, {**overrides, **values}))
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


def expand(manifest: Manifest) -> tuple[list[TaskSpec], list[Problem]]:
    """Every row's tasks, in manifest order, plus problems with ids and ``repeat``."""
    name = str(manifest.path)
    tasks: list[TaskSpec] = []
    problems = list(manifest.problems)
    if not manifest.rows and not problems:
        problems.append(Problem(name, None, None, None, None, "has no rows: nothing would run"))
    seen_ids: dict[str, int | None] = {}
    for row in manifest.rows:
        row_id = row.row_id
        if "/" in row_id or len(row_id) > 100:
            problems.append(
                Problem(
                    name,
                    row_id,
                    row.line,
                    "id",
                    row_id,
                    "must not contain '/' and be at most 100 characters",
                )
            )
            continue
        if row_id in seen_ids:
            first = seen_ids[row_id]
            problems.append(
                Problem(
                    name, row_id, row.line, "id", row_id, f"is used twice (first at line {first})"
                )
            )
            continue
        seen_ids[row_id] = row.line
        repeat = _repeat(row.values.get("repeat", 1))
        if repeat is None:
            problems.append(
                Problem(
                    name,
                    row_id,
                    row.line,
                    "repeat",
                    row.values.get("repeat"),
                    f"must be a whole number from 1 to {MAX_REPEAT}",
                )
            )
            continue
        settings = {k: v for k, v in row.values.items() if k not in ROW_ONLY_FIELDS}
        combos, empty = _combinations(settings)
        if empty:
            problems.append(
                Problem(name, row_id, row.line, empty, [], "an empty list expands to no tasks")
            )
            continue
        number = itertools.count(1)
        for _ in range(repeat):
            for combo in combos:
                key = f"{row_id}/{next(number)}"
                tasks.append(TaskSpec(key, row_id, name, row.line, combo))
    return tasks, problems


def _repeat(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if 1 <= number <= MAX_REPEAT else None


def _expands(name: str, value: Any) -> bool:
    if not isinstance(value, list):
        return False
    if name == "voice_list":  # a list of ids is one value; a list of lists expands
        return bool(value) and all(isinstance(v, list) for v in value)
    return True


def _combinations(settings: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """The product of every list-valued setting, in sorted field order so that the
    numbering does not depend on how the user ordered the keys in the row."""
    varying = sorted(name for name, value in settings.items() if _expands(name, value))
    for name in varying:
        if not settings[name]:
            return [], name
    fixed = {k: v for k, v in settings.items() if k not in varying}
    combos = []
    for values in itertools.product(*(settings[name] for name in varying)):
        combos.append({**fixed, **dict(zip(varying, values, strict=True))})
    return combos, None
