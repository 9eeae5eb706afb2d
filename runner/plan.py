"""Turn expanded tasks into validated, priced requests: everything checked before a cent.

Validation runs over *every* task and collects every problem, so a user fixes a
manifest in one pass instead of one error per attempt. Each local image is read once
however many tasks use it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from jobs import kling_i2v
from jobs.problems import FieldProblem
from runner.manifest import Manifest, Problem, TaskSpec, expand
from runner.records import TaskRecord

# An image reference (as written, or its resolved path) -> (the reference to send, what
# the file is, its problems): each image is checked once however many tasks name it.
ImageChecks = dict[object, tuple[str | None, kling_i2v.ImageFacts | None, list[FieldProblem]]]
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class PlannedTask:
    """A task ready to be recorded in the ledger and sent."""

    key: str
    row_id: str
    source: str
    image: str  # as written in the manifest
    request: kling_i2v.Request
    fingerprint: str
    est_cost_usd: float
    video_name: str

    def request_json(self) -> str:
        return self.request.to_json()

    @classmethod
    def from_record(cls, record: TaskRecord, job: ModuleType = kling_i2v) -> PlannedTask:
        """A ledger task as planned, for the estimates ``resume`` and ``rerun`` show."""
        return cls(
            key=record.task_key,
            row_id=record.row_id,
            source=record.source,
            image=record.image,
            request=job.Request.from_json(record.request_json),
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
    prices: dict[str, float] = field(default_factory=dict)  # USD per second by tier, as used

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def total_cost(self) -> float:
        return round(sum(t.est_cost_usd for t in self.tasks), 2)

    def cost_breakdown(self) -> list[tuple[int, str, int, float]]:
        """(duration, price tier, tasks, estimated USD), for the estimate table."""
        counts: Counter[tuple[int, str]] = Counter()
        cost: dict[tuple[int, str], float] = {}
        for task in self.tasks:
            group = (task.request.duration, kling_i2v.price_tier(task.request))
            counts[group] += 1
            cost[group] = cost.get(group, 0.0) + task.est_cost_usd
        return [(d, tier, counts[d, tier], round(cost[d, tier], 2)) for d, tier in sorted(counts)]


def video_file_name(task_key: str) -> str:
    """A file name from a task key that cannot escape the videos folder."""
    stem = _UNSAFE.sub("_", task_key.replace("/", "_")).strip("._") or "task"
    return f"{stem[:120]}.mp4"


def plan(
    manifest: Manifest,
    prices: Mapping[str, float] | None = None,
    job: ModuleType = kling_i2v,
) -> Plan:
    """Validate and price every task. ``prices`` (``--price-per-second``) beat the
    manifest's ``prices:``, which beat the job's own table."""
    specs, problems = expand(manifest)
    table, from_file = job.check_prices(manifest.prices)
    given, from_option = job.check_prices(prices or {})
    table.update({tier: given[tier] for tier in prices or {} if tier in given})
    problems += [
        Problem(str(manifest.path), None, None, p.field, p.value, p.rule) for p in from_file
    ]
    problems += [
        Problem("--price-per-second", None, None, p.field, p.value, p.rule) for p in from_option
    ]
    result = Plan(problems=problems, prices=table)
    prices = table
    image_cache: ImageChecks = {}
    names: dict[str, str] = {}
    for spec in specs:
        task = _plan_one(spec, manifest.base_dir, image_cache, result, prices, job)
        if task is None:
            continue
        clash = names.get(task.video_name)
        if clash is not None:
            result.problems.append(
                _locate(
                    spec,
                    FieldProblem(
                        "id", spec.row_id, f"its video file name clashes with task '{clash}'"
                    ),
                )
            )
            continue
        names[task.video_name] = task.key
        result.tasks.append(task)
    result.problems = _unique(result.problems)
    result.warnings = _unique(result.warnings)
    return result


def _plan_one(
    spec: TaskSpec,
    base_dir: Path,
    image_cache: ImageChecks,
    result: Plan,
    prices: Mapping[str, float] | None,
    job: ModuleType,
) -> PlannedTask | None:
    typed, field_problems = job.check_fields(spec.values)
    image_ref, facts = None, None
    raw_image = spec.values.get("image")
    if isinstance(raw_image, str) and raw_image.strip():
        image_ref, facts, image_problems = _check_image(
            raw_image.strip(), base_dir, image_cache, job
        )
        field_problems += image_problems
        if image_ref and job.is_url(image_ref):
            result.url_images += 1
    elif raw_image is not None and not isinstance(raw_image, str):
        field_problems.append(
            FieldProblem("image", raw_image, "must be a file path or an http(s) URL")
        )
    if field_problems:
        result.problems.extend(_locate(spec, p) for p in field_problems)
        return None
    request = job.Request(image=image_ref, **typed)
    if "sound" not in typed and request.sound:
        result.sound_by_default += 1
    result.warnings.extend(_locate(spec, w) for w in job.warnings_for(request, facts))
    return PlannedTask(
        key=spec.key,
        row_id=spec.row_id,
        source=spec.source,
        image=str(raw_image).strip(),
        request=request,
        fingerprint=job.fingerprint(request, facts.sha256 if facts else None),
        est_cost_usd=job.estimate_cost(request, prices),
        video_name=video_file_name(spec.key),
    )


def _check_image(
    raw: str,
    base_dir: Path,
    cache: ImageChecks,
    job: ModuleType,
) -> tuple[str | None, kling_i2v.ImageFacts | None, list[FieldProblem]]:
    """Check an image once per distinct reference: a big batch names a few images many
    times, and resolving a path costs more than checking a cached answer."""
    if raw not in cache:
        if job.is_url(raw):
            cache[raw] = (raw, None, job.check_image_url(raw))
        elif problems := job.check_image_reference(raw):
            cache[raw] = (None, None, problems)
        else:
            path = Path(raw).expanduser()
            if not path.is_absolute():
                path = base_dir / path
            path = path.resolve()
            if path not in cache:  # two spellings of one file share its check
                facts, problems = job.check_image_file(path)
                cache[path] = (str(path), facts, problems)
            cache[raw] = cache[path]
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
