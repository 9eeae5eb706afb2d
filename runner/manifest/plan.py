"""Turn expanded tasks into validated, priced requests: everything checked before a cent.

Each task names its model (``model:``, the seed model when it names none); the model's
contract (``jobs.contract``) reads and checks its settings, and every image it takes is
checked once however many tasks use it. Validation runs over *every* task and collects
every problem, so a user fixes a manifest in one pass instead of one error per attempt.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections import Counter
from collections.abc import Container, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from jobs import PriceTables, price_tables, request_from_json
from jobs.contract import Model, Request
from jobs.pictures import (
    PICTURE_FIELDS,
    read_settings,
)
from jobs.problems import FieldProblem
from runner.core.records import TaskRecord
from runner.manifest.chains import ChainSummary, link
from runner.manifest.plan_pictures import AUTO, ManifestPictures, TaskPictures
from runner.manifest.rows import (
    MAX_TASKS,
    ROW_ONLY_FIELDS,
    Manifest,
    Problem,
    TaskSpec,
    expand,
    gc_paused,
    model_name_of,
    model_of_spec,
)
from runner.media.picture_pool import (
    PlannedPicture,
    pictures_json,
    planned_pictures,
)

# An estimate above this is said with a warning before spending: a 1 KB row of lists
# can plan a batch of hundreds of thousands of dollars.
LARGE_BATCH_USD = 500.0
_UNSAFE = re.compile(r"[^\w.-]+")  # letters of any script stay: a CJK key keeps its name
# Defaults that are no model's setting: the row's own, and what it asks of its pictures.
_ROW_WIDE = frozenset({"model", *ROW_ONLY_FIELDS, *PICTURE_FIELDS})


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
    pictures: tuple[PlannedPicture, ...] = ()
    picture_settings: tuple[tuple[str, Any], ...] = ()  # as the row gave them
    # With a converted picture: the fingerprint a kling-batch from before conversions
    # gave it (it sent the file as it was), so that a task it sent is not "changed".
    legacy_fingerprint: str | None = None
    parent: str | None = None  # a chain link: the task whose last frame is its first
    chain: str | None = None  # the chain it belongs to (its first link's row id)
    stitch: bool = False  # the row asks for its chain's film at the end of the run

    def request_json(self) -> str:
        return self.request.to_json()

    def pictures_json(self) -> str | None:
        """Kept in the ledger: what is sent instead of each converted picture, and how
        it is made (so that ``resume`` makes it again if ``images/`` was emptied), and
        the row's picture settings (so that ``failed.yaml`` keeps them)."""
        images = {p.field: (p.name, p.conversion) for p in self.pictures}
        return pictures_json(images, dict(self.picture_settings))

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
            pictures=planned_pictures(record),
            parent=record.parent,
            chain=record.chain,
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
    def conversions(self) -> list[PlannedPicture]:
        """Each picture file converted, once however many tasks send it, in task order
        (two files of the same content are one conversion in ``images/``)."""
        unique = {(p.original, p.name): p for task in self.tasks for p in task.pictures}
        return list(unique.values())

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

    @property
    def chains(self) -> list[ChainSummary]:
        """Each chain, its links in order, its length and its price."""
        links: dict[str, list[PlannedTask]] = {}
        for task in self.tasks:
            if task.chain is not None:
                links.setdefault(task.chain, []).append(task)
        return [
            ChainSummary(
                name,
                tuple(t.key for t in tasks),
                sum(int(t.request.get("duration") or 0) for t in tasks),
                round(sum(t.est_cost_usd for t in tasks), 2),
            )
            for name, tasks in links.items()
        ]

    def cost_breakdown(self) -> list[tuple[str, int, str, int, float]]:
        """(model, duration, price tier, tasks, estimated USD), for the estimate table."""
        counts: Counter[tuple[str, int, str]] = Counter()
        cost: dict[tuple[str, int, str], float] = {}
        for task in self.tasks:
            group = (task.request.model.name, task.request.duration, task.request.tier())
            counts[group] += 1
            cost[group] = cost.get(group, 0.0) + task.est_cost_usd
        return [(*group, counts[group], round(cost[group], 2)) for group in sorted(counts)]


# A video's stem, in bytes: its longest neighbour is ``<stem>.mp4.part``, and a name is
# at most 255 bytes on most disks (143 on eCryptfs): a CJK character is 3 bytes.
STEM_MAX_BYTES = 120


def video_file_name(task_key: str, taken: Container[str] = ()) -> str:
    """A file name from a task key that cannot escape the videos folder, cannot be too
    long for a disk (bounded in bytes), and is not in ``taken`` (casefolded names of the
    batch's other videos: macOS and Windows disks see ``Cat.mp4`` as ``cat.mp4``). A
    name cut short or clashing ends in a digest of its task key."""
    stem = _UNSAFE.sub("_", task_key.replace("/", "_")).strip("._") or "task"
    digest = hashlib.sha256(task_key.encode("utf-8")).hexdigest()
    if len(stem.encode("utf-8")) > STEM_MAX_BYTES:
        stem = f"{_cut(stem, STEM_MAX_BYTES - 9)}-{digest[:8]}"
    if f"{stem}.mp4".casefold() in taken:
        stem = f"{_cut(stem, STEM_MAX_BYTES - 13)}-{digest[:12]}"
    return f"{stem}.mp4"


def _cut(text: str, max_bytes: int) -> str:
    """The longest start of ``text`` within ``max_bytes`` of UTF-8, whole characters."""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")


def plan(
    manifest: Manifest, prices: Mapping[str, Any] | None = None, max_tasks: int = MAX_TASKS
) -> Plan:
    """Validate and price every task. ``prices`` (``--price-per-second``) beat the
    manifest's ``prices:``, which beat each model's own table."""
    with gc_paused():  # 100,000 tasks are a million small objects: see gc_paused
        return _plan(manifest, prices, max_tasks)


def _plan(manifest: Manifest, prices: Mapping[str, Any] | None, max_tasks: int) -> Plan:
    specs, problems = expand(manifest, max_tasks)
    specs, chain_problems = link(specs)
    problems += chain_problems
    _, from_file = price_tables(manifest.prices)
    _, from_option = price_tables(prices or {})
    tables, _ = price_tables({**manifest.prices, **(prices or {})})
    problems += [
        Problem(file=str(manifest.path), field=p.field, value=p.value, rule=p.rule)
        for p in from_file
    ]
    problems += [
        Problem(file="--price-per-second", field=p.field, value=p.value, rule=p.rule)
        for p in from_option
    ]
    result = Plan(problems=problems, patterns=dict(manifest.patterns))
    typos = _defaults_no_model_takes(specs)
    result.problems += typos
    pictures = ManifestPictures(specs, manifest.base_dir)
    names: dict[str, str] = {}
    # (default, model) already said: a typo is an error above, not also a warning.
    models = {model_name_of(spec) for spec in specs}  # once, not once per typo
    skipped = {(p.field or "", m) for p in typos for m in models}
    for spec in specs:
        task = _plan_one(spec, pictures, result, tables, skipped)
        if task is None:
            continue
        if task.video_name.casefold() in names:  # macOS, Windows: Cat.mp4 is cat.mp4
            task = replace(task, video_name=video_file_name(task.key, names))
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
        m.name: m for spec in specs if not isinstance(m := model_of_spec(spec), FieldProblem)
    }.values()
    if not models:
        return []
    defaulted = {name: spec for spec in specs for name in spec.defaulted if name not in _ROW_WIDE}
    problems = []
    for name, spec in sorted(defaulted.items()):
        if any(model.takes(name) for model in models):
            continue
        known = sorted({f for model in models for f in model.by_name})
        close = difflib.get_close_matches(name, [*known, *PICTURE_FIELDS], n=1)
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
    return Problem(file=spec.file, field=name, rule=rule)


def _settings(
    spec: TaskSpec, model: Model, result: Plan, skipped: set[tuple[str, str]]
) -> dict[str, Any]:
    """The task's settings for its model: a default (``defaults``, ``--set``) that the
    model does not take is skipped for that task, and said once per model."""
    values = {}
    for name, value in spec.values.items():
        if name == "model" or name in PICTURE_FIELDS or _is_auto(name, value):
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


def _is_auto(name: str, value: Any) -> bool:
    return name == "aspect_ratio" and isinstance(value, str) and value.strip().lower() == AUTO


def _plan_one(
    spec: TaskSpec,
    pictures: ManifestPictures,
    result: Plan,
    tables: PriceTables,
    skipped: set[tuple[str, str]],
) -> PlannedTask | None:
    model = model_of_spec(spec)
    if isinstance(model, FieldProblem):
        result.problems.append(_locate(spec, model))
        return None
    typed, field_problems = model.check(_settings(spec, model, result, skipped))
    settings, setting_problems = read_settings(spec.values)
    field_problems += setting_problems
    auto = any(_is_auto(k, v) for k, v in spec.values.items())
    if auto and not model.image_fields:
        field_problems.append(
            FieldProblem("aspect_ratio", AUTO, f"follows the picture: {model.name} takes none")
        )
    found = TaskPictures(model, settings, auto)
    for name in model.image_fields:
        raw = typed.get(name)
        if isinstance(raw, str) and raw:
            typed[name] = found.add(name, raw, pictures, typed)
    field_problems += found.problems
    result.url_images += found.urls
    warnings = list(found.warnings)
    if field_problems:
        result.problems.extend(_locate(spec, p) for p in field_problems)
        return None
    request = model.request(typed)
    if "sound" not in typed and request.get("sound"):
        result.sound_by_default += 1
    warnings += [w for rule in model.warnings if (w := rule(request.values)) is not None]
    result.warnings.extend(_locate(spec, w) for w in warnings)
    raw_image = spec.values.get("image")
    return PlannedTask(
        key=spec.key,
        row_id=spec.row_id,
        source=spec.source,
        image=raw_image.strip() if isinstance(raw_image, str) else "",
        request=request,
        fingerprint=request.fingerprint(found.digests),
        est_cost_usd=request.estimate(tables[model.name]),
        video_name=video_file_name(spec.key),
        pictures=tuple(found.planned),
        legacy_fingerprint=request.fingerprint(found.sources) if found.planned else None,
        picture_settings=tuple((k, spec.values[k]) for k in PICTURE_FIELDS if k in spec.values),
        parent=spec.parent,
        chain=spec.chain,
        stitch=spec.stitch,
    )


def _locate(spec: TaskSpec, problem: FieldProblem) -> Problem:
    return Problem(
        file=spec.file,
        row=spec.row_id,
        line=spec.line,
        field=problem.field,
        value=problem.value,
        rule=problem.rule,
    )


def _unique(problems: list[Problem]) -> list[Problem]:
    """One row's expansions share most problems (one bad image, many tasks): say each once."""
    seen: set[str] = set()
    unique = []
    for problem in problems:
        if str(problem) not in seen:
            seen.add(str(problem))
            unique.append(problem)
    return unique
