"""kling-batch as a library, for scripts and notebooks: validate and run a manifest (a
file, a pandas DataFrame of rows, or a list of dicts), and read any run folder's report
as a DataFrame.

The command line is one caller of the same flow (``runner.run.flow``); here nothing is
asked (calling :func:`run` is the yes) and nothing is printed but warnings (everything
goes to the run folder's ``run.log``). :func:`run` works from a script and from inside
an event loop that is already running (a Jupyter cell): there it runs the batch on a
thread of its own and waits; :func:`run_async` awaits it instead.

A DataFrame or a list of dicts is read as the rows of a YAML manifest: one row per
line, a list in a cell expands as it would in YAML, a missing value (None, NaN) is
"not given", and image paths are relative to ``base_dir`` (default: the current folder).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import yaml

from runner.api.account import record_balance
from runner.core.errors import KlingBatchError, ManifestError
from runner.core.exits import exit_code_of_run
from runner.core.logs import setup_logging
from runner.core.records import TaskRecord
from runner.engine.progress import LineProgress
from runner.ledger.transitions import RunState
from runner.manifest.files import load
from runner.manifest.plan import Plan, plan
from runner.manifest.rows import MAX_TASKS, Manifest
from runner.manifest.yaml_rows import load_yaml
from runner.reports.report import write_reports
from runner.reports.table import build_frame
from runner.run import flow
from runner.run.films import asked_films, make_films
from runner.run.folder import RunFolder
from runner.run.options import RunOptions, option_specs
from runner.run.redo import RedoEstimate, rejected_redo

ManifestLike = str | os.PathLike[str] | pd.DataFrame | Sequence[Mapping[str, Any]]
T = TypeVar("T")


@dataclass(frozen=True)
class RunResult:
    """What a run did: its folder, the counts by status, the exit code the command line
    would give, why it stopped early (None: it did not), and the report."""

    run_dir: Path
    counts: dict[str, int]
    created: int
    exit_code: int
    stopped_by: str | None
    report: pd.DataFrame

    @property
    def ok(self) -> bool:
        """Every task the manifest asks for succeeded, and every video is here."""
        return self.exit_code == 0


def load_manifest(
    manifest: ManifestLike,
    *,
    defaults: Mapping[str, Any] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> Manifest:
    """A manifest from a file, a DataFrame or a list of dicts; ``defaults`` apply to every
    row (as ``--set`` does). Raises :class:`ManifestError` when it cannot be read."""
    overrides = dict(defaults or {})
    if isinstance(manifest, str | os.PathLike):
        return load(Path(manifest), overrides)
    rows: Sequence[Mapping[Any, Any]] = (
        manifest.to_dict("records") if isinstance(manifest, pd.DataFrame) else manifest
    )
    text = yaml.safe_dump({"rows": [_plain_row(row) for row in rows]}, allow_unicode=True)
    where = Path(base_dir or Path.cwd()).resolve() / "<rows>"
    return load_yaml(where, text, overrides)


def validate(
    manifest: ManifestLike,
    *,
    defaults: Mapping[str, Any] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    max_tasks: int = MAX_TASKS,
) -> Plan:
    """Every task checked and priced, nothing sent: ``plan.ok``, ``plan.problems`` (each
    names its row and field), ``plan.tasks``, ``plan.total_cost``."""
    return plan(load_manifest(manifest, defaults=defaults, base_dir=base_dir), None, max_tasks)


def run(
    manifest: ManifestLike,
    out: str | os.PathLike[str],
    *,
    simulate: bool = False,
    defaults: Mapping[str, Any] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    **options: Any,
) -> RunResult:
    """Validate, then run the batch into the run folder ``out`` (or resume it: a folder
    that has run before pays for nothing twice) and return what it did. ``simulate``
    rehearses against an embedded simulator; otherwise ``env`` (default: the process's)
    gives ``NOVITA_API_KEY`` and ``NOVITA_BASE_URL``. ``options`` are the spending
    commands' (``budget_usd=5``, ``submit_rate="20/min"``, ``canary="accepted"``...).
    Raises :class:`ManifestError` with every problem before anything is sent."""
    job = _Job(manifest, Path(out), simulate, defaults, base_dir, env or os.environ, options)
    return _off_the_loop(job.run)


def _off_the_loop(call: Callable[[], T]) -> T:
    """``call()``, which runs an event loop of its own: here, or on a thread of its
    own when one is already running here (a notebook's)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return call()
    with concurrent.futures.ThreadPoolExecutor(1, "kling-batch") as pool:
        return pool.submit(call).result()


async def run_async(
    manifest: ManifestLike,
    out: str | os.PathLike[str],
    *,
    simulate: bool = False,
    defaults: Mapping[str, Any] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    **options: Any,
) -> RunResult:
    """:func:`run`, awaited: the batch runs on a thread of its own meanwhile."""
    job = _Job(manifest, Path(out), simulate, defaults, base_dir, env or os.environ, options)
    return await asyncio.to_thread(job.run)


def redo_rejected(
    run_dir: str | os.PathLike[str],
    *,
    expect: RedoEstimate | None = None,
    env: Mapping[str, str] | None = None,
    on_start: Callable[[], None] | None = None,
    **options: Any,
) -> RunResult:
    """Make a run folder's rejected tasks again, each with its edits (``rerun
    --rejected``): new attempts, the old ones kept. ``expect``: the estimate a person
    said yes to; if the redo is no longer that (a task judged or edited since), nothing
    is sent and :class:`RedoChanged` says so. Raises :class:`ManifestError` for an
    edit that cannot be sent, and ``RunFolderError`` while a run holds the folder.
    ``on_start`` is called once the folder is held and the redo checked. Like
    :func:`run`, it works inside a running event loop too."""
    return _off_the_loop(
        functools.partial(
            _redo_rejected, Path(run_dir), expect, env or os.environ, on_start, options
        )
    )


def _redo_rejected(
    run_dir: Path,
    expect: RedoEstimate | None,
    env: Mapping[str, str],
    on_start: Callable[[], None] | None,
    options: Mapping[str, Any],
) -> RunResult:
    with RunFolder.existing(run_dir) as folder:
        redo = rejected_redo(folder.state)
        if redo.problems:
            raise ManifestError(redo.problems)
        if expect is not None and redo.estimate != expect:
            raise RedoChanged(expect, redo.estimate)
        connection = flow.connect_folder(folder, env)
        chosen = RunOptions.resolve(flow.saved_options(folder.state), _given(options))
        setup_logging(folder.run_dir, secrets=[connection.api_key], quiet=True)
        if on_start is not None:
            on_start()
        return _spend(folder, connection, chosen, rerun=redo.tasks)


class RedoChanged(KlingBatchError):
    """The rejected tasks are not what the person said yes to: nothing was sent."""

    def __init__(self, expected: RedoEstimate, now: RedoEstimate):
        self.now = now
        super().__init__(
            f"the redo changed since it was shown ({len(expected.keys)} task(s), "
            f"${expected.usd:.2f}; now {len(now.keys)}, ${now.usd:.2f}): nothing was sent"
        )


def read_report(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Any run folder's report as a DataFrame (the columns of ``report.csv``), read from
    its ledger without writing anything: it works while a run holds the folder."""
    state = RunState.open(Path(run_dir), read_only=True)
    try:
        return build_frame(state.tasks(), Path(run_dir), state.reviews())
    finally:
        state.close()


@dataclass(frozen=True)
class _Job:
    manifest: ManifestLike
    out: Path
    simulate: bool
    defaults: Mapping[str, Any] | None
    base_dir: str | os.PathLike[str] | None
    env: Mapping[str, str]
    options: Mapping[str, Any]

    def run(self) -> RunResult:
        planned = validate(self.manifest, defaults=self.defaults, base_dir=self.base_dir)
        if not planned.ok:
            raise ManifestError(planned.problems)
        connection = flow.connect(self.simulate, self.env)
        with RunFolder.for_run(self.out) as folder:
            folder.check_api(connection.api)
            folder.sync(planned.tasks)
            options = RunOptions.resolve(flow.saved_options(folder.state), _given(self.options))
            setup_logging(folder.run_dir, secrets=[connection.api_key], quiet=True)
            return _spend(folder, connection, options)


def _spend(
    folder: RunFolder,
    connection: flow.Connection,
    options: RunOptions,
    rerun: Sequence[TaskRecord] | None = None,
) -> RunResult:
    """The command line's flow without its question: check, commit, run, report."""
    state = folder.state
    with flow.base_url(state, connection) as url:
        checked = asyncio.run(flow.preflight(state, url, connection.api_key, options, rerun))
        record_balance(state, checked.account.balance)
        flow.make_pictures(state, folder.run_dir, flow.to_send(state, checked.to_resubmit))
        flow.commit(state, connection, options, None, checked.to_resubmit)
        learned = flow.learned_of(state, connection)
        progress = LineProgress(options.progress_every_s)
        outcome, balance = asyncio.run(
            flow.run_batch(folder, url, connection.api_key, options, progress, _say, learned)
        )
    record_balance(state, balance)
    if asked := asked_films(state):  # the rows said stitch: true (before the page)
        make_films(state, folder.run_dir, asked)
    write_reports(state, folder.run_dir)
    code = exit_code_of_run(
        outcome.counts,
        videos_missing=state.missing_videos() if options.download else 0,
        stop=outcome.stop_error,
        stopped=outcome.stopped_by is not None,
    )
    return RunResult(
        folder.run_dir,
        outcome.counts,
        outcome.created,
        code,
        outcome.stopped_by,
        build_frame(state.tasks(), folder.run_dir, folder.state.reviews()),
    )


def _given(options: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword options by their field names, text read as the command line reads it."""
    specs = {spec.name: spec for spec in option_specs()}
    unknown = sorted(set(options) - set(specs))
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(unknown)}; they are: {', '.join(specs)}")
    given = {}
    for name, value in options.items():
        spec = specs[name]
        given[name] = spec.parse(value) if isinstance(value, str) and spec.parse else value
    return given


def _plain_row(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A row as YAML takes it: numpy numbers as Python's, a missing value left out."""
    plain = {}
    for key, value in row.items():
        item = value.item() if hasattr(value, "item") and not isinstance(value, list) else value
        if item is None or (isinstance(item, float) and math.isnan(item)):
            continue
        plain[str(key)] = item
    return plain


def _say(signal_name: str) -> None:
    """A first Ctrl-C in a script that calls :func:`run`: said in run.log (the stop
    itself is the engine's)."""
