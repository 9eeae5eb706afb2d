"""Load a manifest (YAML or CSV) and expand its rows into tasks with stable keys.

Expansion rules (one row can become several tasks):
- a list value expands into one task per value; several lists combine as a product
  (``model: [a, b]`` runs the row on both); a field whose one value is a list
  (``voice_list``, ``multi_prompt``) expands only from a list *of lists*;
- ``repeat: N`` runs every combination N times.

Task keys are ``<row id>/<n>``, numbered with ``repeat`` as the *outer* loop, so raising
``repeat`` only appends keys and never renumbers tasks that were already paid for.
Whatever else changes a task is caught by its request fingerprint (see ``plan``).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from jobs import DEFAULT_MODEL, MODELS
from jobs.contract import Model, Wire
from jobs.problems import FieldProblem

# ``model`` is a setting like any other: it expands. ``after`` names the row a row
# continues (runner.manifest.chains); ``stitch`` asks for its chain's film.
ROW_ONLY_FIELDS = ("id", "repeat", "after", "stitch")
# Fields whose one value is itself a list (voice ids, multi-shot segments), by contract.
LIST_VALUED = frozenset(
    f.name for m in MODELS.values() for f in m.fields if f.wire in (Wire.VOICES, Wire.SEGMENTS)
)
MAX_REPEAT = 1000


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """CPython's cycle collector walks every live object each time its oldest
    generation fills; reading a big manifest makes a million small objects at once
    (YAML nodes, rows, tasks), so it walks them again and again for nothing (measured:
    composing 100,000 YAML rows took 12.2 s with it, 2.6 s without). None of them form
    cycles, so reference counting frees them; the collector runs again after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# More tasks than this is refused before any is built (``--max-tasks`` raises it): a
# product of a few lists reaches millions, and building them would exhaust the memory.
MAX_TASKS = 100_000


@dataclass(frozen=True, kw_only=True)
class Problem:
    """One thing wrong with a manifest, located as precisely as we can (each part by
    name: six positional fields, four of them often None, were misread)."""

    file: str
    rule: str
    row: str | None = None
    line: int | None = None
    field: str | None = None
    value: Any = None

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
    # The middle goes, not the end: a long path keeps the file's name in sight.
    return text if len(text) <= 60 else text[:24] + "..." + text[-33:]


@dataclass(frozen=True)
class Row:
    """One manifest row with the defaults already applied (values still raw)."""

    number: int
    line: int | None
    values: dict[str, Any]
    # Names whose value came from ``defaults`` or ``--set``, not from the row itself: a
    # default that a row's model does not take is skipped, not an error.
    defaulted: frozenset[str] = frozenset()

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
    # Each image pattern (a glob, or a folder) and how many files it matched.
    patterns: dict[str, int] = field(default_factory=dict)

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
    defaulted: frozenset[str] = frozenset()
    # Chains (runner.manifest.chains): the row this one continues, as written; then,
    # once linked, the task whose last frame is this one's first, and the chain's name.
    after: str | None = None
    stitch: bool = False
    parent: str | None = None
    chain: str | None = None

    @property
    def source(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


# A plain (unquoted) scalar like 16:9 is a base-60 number to YAML 1.1: 16:9 reads as 969.
SEXAGESIMAL = re.compile(r"^[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+$")


def parse_overrides(items: Iterable[str], option: str = "--set") -> dict[str, Any]:
    """``--set key=value`` pairs; values are read as YAML scalars (10, false, 0.7), but
    a ratio stays text: ``--set aspect_ratio=16:9`` means "16:9", not YAML's 969."""
    overrides: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"{option} expects key=value, got {item!r}")
        if SEXAGESIMAL.match(raw.strip()):
            overrides[name.strip()] = raw.strip()
            continue
        try:
            overrides[name.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            overrides[name.strip()] = raw
    return overrides


def expand(manifest: Manifest, max_tasks: int = MAX_TASKS) -> tuple[list[TaskSpec], list[Problem]]:
    """Every row's tasks, in manifest order, plus problems with ids and ``repeat``.
    The tasks are counted before any is built: past ``max_tasks`` nothing is."""
    name = str(manifest.path)
    total = sum(_count(row) for row in manifest.rows)
    if total > max_tasks:
        biggest = max(manifest.rows, key=_count)
        return [], [
            *manifest.problems,
            Problem(
                file=name,
                row=biggest.row_id,
                line=biggest.line,
                rule=f"the manifest expands to {total:,} tasks, more than the limit of "
                f"{max_tasks:,} (this row alone: {_count(biggest):,}; lists combine as a "
                "product): shorten its lists, or raise --max-tasks if you mean it",
            ),
        ]
    tasks: list[TaskSpec] = []
    problems = list(manifest.problems)
    if not manifest.rows and not problems:
        problems.append(Problem(file=name, rule="has no rows: nothing would run"))
    seen_ids: dict[str, int | None] = {}
    for row in manifest.rows:
        row_id = row.row_id
        settings = {k: v for k, v in row.values.items() if k not in ROW_ONLY_FIELDS}
        combos: list[dict[str, Any]] = []
        refused = _row_refused(row, row_id, seen_ids)
        if refused is None:
            combos, empty = _combinations(settings)
            if empty:
                refused = (empty, [], "an empty list expands to no tasks")
        if refused is not None:
            field_name, value, rule = refused
            problems.append(
                Problem(
                    file=name, row=row_id, line=row.line, field=field_name, value=value, rule=rule
                )
            )
            continue
        repeat = _repeat(row.values.get("repeat", 1)) or 1
        number = itertools.count(1)
        for _ in range(repeat):
            for combo in combos:
                key = f"{row_id}/{next(number)}"
                tasks.append(
                    TaskSpec(
                        key,
                        row_id,
                        name,
                        row.line,
                        combo,
                        row.defaulted,
                        after=_text_or_none(row.values.get("after")),
                        stitch=row.values.get("stitch") in (True, "true", "yes", "1", 1),
                    )
                )
    return tasks, problems


def _row_refused(
    row: Row, row_id: str, seen_ids: dict[str, int | None]
) -> tuple[str, Any, str] | None:
    """What is wrong with a row as a whole (its id, its repeat): (field, value, rule);
    a good id is remembered in ``seen_ids``."""
    if "/" in row_id or len(row_id) > 100:
        return "id", row_id, "must not contain '/' and be at most 100 characters"
    if row_id in seen_ids:
        return "id", row_id, f"is used twice (first at line {seen_ids[row_id]})"
    seen_ids[row_id] = row.line
    if _repeat(row.values.get("repeat", 1)) is None:
        return "repeat", row.values.get("repeat"), f"must be a whole number from 1 to {MAX_REPEAT}"
    return None


def _text_or_none(value: Any) -> str | None:
    return None if value in (None, "") else str(value).strip()


def _count(row: Row) -> int:
    """How many tasks a row expands to, without building them."""
    settings = {k: v for k, v in row.values.items() if k not in ROW_ONLY_FIELDS}
    count = _repeat(row.values.get("repeat", 1)) or 1
    for name, value in settings.items():
        if _expands(name, value):
            count *= len(value)
    return count


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
    if name in LIST_VALUED:  # a list of ids or segments is one value; a list of lists expands
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


def model_name_of(spec: TaskSpec) -> str:
    """The model a task asks for, by name (the default's when it names none)."""
    return str(spec.values.get("model") or DEFAULT_MODEL)


def model_of_spec(spec: TaskSpec) -> Model | FieldProblem:
    """The model a task asks for, or the problem with its name."""
    name = spec.values.get("model") or DEFAULT_MODEL
    if not isinstance(name, str) or name not in MODELS:
        return FieldProblem("model", name, f"is not a model; known: {', '.join(MODELS)}")
    return MODELS[name]
