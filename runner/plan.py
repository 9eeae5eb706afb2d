"""Turn expanded tasks into validated, priced requests: everything checked before a cent.

Each task names its model (``model:``, the seed model when it names none); the model's
contract (``jobs.contract``) reads and checks its settings, and every image it takes is
checked once however many tasks use it. Validation runs over *every* task and collects
every problem, so a user fixes a manifest in one pass instead of one error per attempt.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs import DEFAULT_MODEL, MODELS, PriceTables, price_tables, request_from_json
from jobs.contract import Model, Request
from jobs.images import (
    ImageFacts,
    check_image_file,
    check_image_reference,
    check_image_url,
    is_url,
    orientation_warning,
)
from jobs.problems import FieldProblem
from runner.manifest import MAX_TASKS, ROW_ONLY_FIELDS, Manifest, Problem, TaskSpec, expand
from runner.records import TaskRecord

# An image reference (as written, or its resolved path) -> (the reference to send, what
# the file is, its problems): each image is checked once however many tasks name it.
ImageChecks = dict[object, tuple[str | None, ImageFacts | None, list[FieldProblem]]]
# An estimate above this is said with a warning before spending: a 1 KB row of lists
# can plan a batch of hundreds of thousands of dollars.
LARGE_BATCH_USD = 500.0
_UNSAFE = re.compile(r"[^\w.-]+")  # letters of any script stay: a CJK key keeps its name
_ROW_WIDE = frozenset({"model", *ROW_ONLY_FIELDS})  # defaults that are no model's setting


@dataclass(frozen=True)
class PlannedTask:
    """A task ready to be recorded in the ledger and sent."""

    key: str
    row_id: str
    source: str
    image: str  # the first frame as written in the manifest ("" for text-to-video)
    request: Request
    fingerprint: str
    est_cost_usd: float
    video_name: str

    def request_json(self) -> str:
        return self.request.to_json()

    @classmethod
    def from_record(cls, record: TaskRecord) -> PlannedTask:
        """A ledger task as planned, for the estimates ``resume`` and ``rerun`` show."""
        return cls(
            key=record.task_key,
            row_id=record.row_id,
            source=record.source,
            image=record.image,
            request=request_from_json(record.request_json),
            fingerprint=record.fingerprint,
            est_cost_usd=record.est_cost_usd,
            video_name=record.video_name,
        )


@dataclass
class Plan:
    tasks: list[PlannedTask] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    url_images: int = 0
    sound_by_default: int = 0  # tasks that get sound (and its price) only from the API default
    prices: PriceTables = field(default_factory=dict)  # USD per second, by model and tier
    patterns: dict[str, int] = field(default_factory=dict)  # image glob or folder -> files

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def total_cost(self) -> float:
        return round(sum(t.est_cost_usd for t in self.tasks), 2)

    @property
    def large(self) -> bool:
        return self.total_cost > LARGE_BATCH_USD

    @property
    def models(self) -> list[str]:
        return sorted({t.request.model.name for t in self.tasks})

    def cost_breakdown(self) -> list[tuple[str, int, str, int, float]]:
        """(model, duration, price tier, tasks, estimated USD), for the estimate table."""
        counts: Counter[tuple[str, int, str]] = Counter()
        cost: dict[tuple[str, int, str], float] = {}
        for task in self.tasks:
            group = (task.request.model.name, task.request.duration, task.request.tier())
            counts[group] += 1
            cost[group] = cost.get(group, 0.0) + task.est_cost_usd
        return [(*group, counts[group], round(cost[group], 2)) for group in sorted(counts)]


def video_file_name(task_key: str) -> str:
    """A file name from a task key that cannot escape the videos folder."""
    stem = _UNSAFE.sub("_", task_key.replace("/", "_")).strip("._") or "task"
    return f"{stem[:120]}.mp4"


def plan(
    manifest: Manifest, prices: Mapping[str, Any] | None = None, max_tasks: int = MAX_TASKS
) -> Plan:
    """Validate and price every task. ``prices`` (``--price-per-second``) beat the
    manifest's ``prices:``, which beat each model's own table."""
    specs, problems = expand(manifest, max_tasks)
    _, from_file = price_tables(manifest.prices)
    _, from_option = price_tables(prices or {})
    tables, _ = price_tables({**manifest.prices, **(prices or {})})
    problems += [
        Problem(str(manifest.path), None, None, p.field, p.value, p.rule) for p in from_file
    ]
    problems += [
        Problem("--price-per-second", None, None, p.field, p.value, p.rule) for p in from_option
    ]
    result = Plan(problems=problems, patterns=dict(manifest.patterns))
    typos = _defaults_no_model_takes(specs)
    result.problems += typos
    image_cache: ImageChecks = {}
    names: dict[str, str] = {}
    # (default, model) already said: a typo is an error above, not also a warning.
    models = {_model_name(spec) for spec in specs}  # once, not once per typo
    skipped = {(p.field or "", m) for p in typos for m in models}
    for spec in specs:
        task = _plan_one(spec, manifest.base_dir, image_cache, result, tables, skipped)
        if task is None:
            continue
        clash = names.get(task.video_name.casefold())  # macOS, Windows: Cat.mp4 is cat.mp4
        if clash is not None:
            result.problems.append(
                _locate(
                    spec,
                    FieldProblem(
                        "id",
                        spec.row_id,
                        f"its video file name clashes with task '{clash}' (names are "
                        "compared without case, as macOS and Windows disks do): change an id",
                    ),
                )
            )
            continue
        names[task.video_name.casefold()] = task.key
        result.tasks.append(task)
    result.prices = {name: tables[name] for name in result.models}
    result.problems = _unique(result.problems)
    result.warnings = _unique(result.warnings)
    return result


def _defaults_no_model_takes(specs: list[TaskSpec]) -> list[Problem]:
    """A default (``defaults:``, ``--set``) that *no* model of the manifest takes is a
    typo, not a setting for other models: ``sond: false`` skipped would leave every task
    on the API's default (sound on, at twice the price). Only a default that some of the
    manifest's models take is skipped for the others (see :func:`_settings`)."""
    models = {
        m.name: m for spec in specs if not isinstance(m := _model_of(spec), FieldProblem)
    }.values()
    if not models:
        return []
    defaulted = {name: spec for spec in specs for name in spec.defaulted if name not in _ROW_WIDE}
    problems = []
    for name, spec in sorted(defaulted.items()):
        if any(model.takes(name) for model in models):
            continue
        known = sorted({f for model in models for f in model.by_name})
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        problems.append(
            _about_default(
                spec,
                name,
                f"is a default (defaults: or --set) that no model of this manifest takes"
                f"{hint}; they take: {', '.join(known)}",
            )
        )
    return problems


def _about_default(spec: TaskSpec, name: str, rule: str) -> Problem:
    """A default belongs to no row: said once, at the manifest."""
    return Problem(spec.file, None, None, name, None, rule)


def _model_name(spec: TaskSpec) -> str:
    return str(spec.values.get("model") or DEFAULT_MODEL)


def _model_of(spec: TaskSpec) -> Model | FieldProblem:
    name = spec.values.get("model") or DEFAULT_MODEL
    if not isinstance(name, str) or name not in MODELS:
        return FieldProblem("model", name, f"is not a model; known: {', '.join(MODELS)}")
    return MODELS[name]


def _settings(
    spec: TaskSpec, model: Model, result: Plan, skipped: set[tuple[str, str]]
) -> dict[str, Any]:
    """The task's settings for its model: a default (``defaults``, ``--set``) that the
    model does not take is skipped for that task, and said once per model."""
    values = {}
    for name, value in spec.values.items():
        if name == "model":
            continue
        if name in spec.defaulted and not model.takes(name):
            if (name, model.name) not in skipped:
                skipped.add((name, model.name))
                result.warnings.append(
                    _about_default(
                        spec,
                        name,
                        f"a default that {model.name} does not take: skipped for its tasks",
                    )
                )
            continue
        values[name] = value
    return values


def _plan_one(
    spec: TaskSpec,
    base_dir: Path,
    image_cache: ImageChecks,
    result: Plan,
    tables: PriceTables,
    skipped: set[tuple[str, str]],
) -> PlannedTask | None:
    model = _model_of(spec)
    if isinstance(model, FieldProblem):
        result.problems.append(_locate(spec, model))
        return None
    typed, field_problems = model.check(_settings(spec, model, result, skipped))
    digests: dict[str, str | None] = {}
    facts_by_field: dict[str, ImageFacts | None] = {}
    for name in model.image_fields:
        raw = typed.get(name)
        if not isinstance(raw, str) or not raw:
            continue
        reference, facts, image_problems = _check_image(raw, base_dir, image_cache)
        field_problems += [FieldProblem(name, p.value, p.rule, p.code) for p in image_problems]
        typed[name] = reference
        digests[name] = facts.sha256 if facts else None
        facts_by_field[name] = facts
        if reference and is_url(reference):
            result.url_images += 1
    if field_problems:
        result.problems.extend(_locate(spec, p) for p in field_problems)
        return None
    request = model.request(typed)
    if "sound" not in typed and request.get("sound"):
        result.sound_by_default += 1
    result.warnings.extend(
        _locate(spec, w) for w in _warnings(request, facts_by_field.get("image"))
    )
    raw_image = spec.values.get("image")
    return PlannedTask(
        key=spec.key,
        row_id=spec.row_id,
        source=spec.source,
        image=raw_image.strip() if isinstance(raw_image, str) else "",
        request=request,
        fingerprint=request.fingerprint(digests),
        est_cost_usd=request.estimate(tables[model.name]),
        video_name=video_file_name(spec.key),
    )


def _warnings(request: Request, first_frame: ImageFacts | None) -> list[FieldProblem]:
    """Allowed, but probably not what the user meant."""
    found = []
    turned = orientation_warning(first_frame, request.get("aspect_ratio"))
    if turned is not None:
        found.append(turned)
    found += [w for rule in request.model.warnings if (w := rule(request.values)) is not None]
    return found


def _check_image(
    raw: str, base_dir: Path, cache: ImageChecks
) -> tuple[str | None, ImageFacts | None, list[FieldProblem]]:
    """Check an image once per distinct reference: a big batch names a few images many
    times, and resolving a path costs more than checking a cached answer."""
    if raw not in cache:
        if is_url(raw):
            cache[raw] = (raw, None, check_image_url(raw))
        elif problems := check_image_reference(raw):
            cache[raw] = (None, None, problems)
        else:
            path = Path(raw).expanduser()
            if not path.is_absolute():
                path = base_dir / path
            try:
                path = path.resolve()
            except (RuntimeError, OSError):  # Python 3.11 says a symlink loop this way
                cache[raw] = (None, None, [FieldProblem("image", raw, "is a symlink loop")])
                return _cached(cache, raw)
            if path not in cache:  # two spellings of one file share its check
                facts, problems = check_image_file(path)
                cache[path] = (str(path), facts, problems)
            cache[raw] = cache[path]
    return _cached(cache, raw)


def _cached(
    cache: ImageChecks, raw: str
) -> tuple[str | None, ImageFacts | None, list[FieldProblem]]:
    reference, facts, problems = cache[raw]
    return reference, facts, list(problems)


def _locate(spec: TaskSpec, problem: FieldProblem) -> Problem:
    return Problem(spec.file, spec.row_id, spec.line, problem.field, problem.value, problem.rule)


def _unique(problems: list[Problem]) -> list[Problem]:
    """One row's expansions share most problems (one bad image, many tasks): say each once."""
    seen: set[str] = set()
    unique = []
    for problem in problems:
        if str(problem) not in seen:
            seen.add(str(problem))
            unique.append(problem)
    return unique
