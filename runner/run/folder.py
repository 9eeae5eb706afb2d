"""The rules of a run folder: who may use it, which API its tasks belong to, and that
it asks for exactly what the manifest asks for. Every refusal is a
:class:`RunFolderError` raised before anything is sent (the CLI says it, exit 2).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from runner.core.api_identity import api_identity
from runner.core.causes import RERUN_BY_DEFAULT, FailureClass, failure_class
from runner.core.errors import RunFolderError
from runner.core.logs import RUN_LOG
from runner.core.records import SETTLED, TaskRecord, TaskStatus
from runner.ledger.file import STATE_FILE
from runner.ledger.transitions import PlanConflict, RunState
from runner.manifest.plan import PlannedTask
from runner.run.lock import LOCK_FILE, RunFolderLock
from runner.run.redo import made_links

# What a finished or half-finished run leaves beside its ledger.
RESULT_FILES = ("report.csv", "report.html", "failed.yaml", "failed.csv", "videos")


@dataclass(frozen=True)
class SyncSummary:
    planned: int  # tasks the manifest asks for
    added: int  # new to the ledger
    pending: int  # to submit now
    retired: int  # pending ones whose rows left the manifest: not sent


class RunFolder:
    """A run folder held by this process for spending: its lock and its ledger."""

    def __init__(self, run_dir: Path, lock: RunFolderLock, state: RunState):
        self.run_dir = run_dir
        self.lock = lock
        self.state = state

    @classmethod
    def for_run(cls, run_dir: Path) -> RunFolder:
        """``run``: a new folder, or one with a ledger. Results without a ledger are
        refused: starting afresh there would pay for every row again."""
        _check_out(run_dir)
        lock = RunFolderLock.acquire(run_dir)
        try:
            if not (run_dir / STATE_FILE).exists():
                left = [name for name in RESULT_FILES if _has(run_dir / name)]
                if left:
                    raise RunFolderError(
                        f"{run_dir} holds results of a run ({', '.join(left)}) but no ledger "
                        f"({STATE_FILE}): what was paid for there cannot be known, and "
                        "starting afresh would pay for every row again\n"
                        f"  restore {run_dir / STATE_FILE} (a `{STATE_FILE}.rescued-*` copy "
                        "beside it, if any), or use --out for a new run folder"
                    )
                strangers = _not_ours(run_dir)
                if strangers:
                    raise RunFolderError(
                        f"{run_dir} holds other files ({', '.join(strangers[:3])}"
                        f"{', ...' if len(strangers) > 3 else ''}) and no ledger: a run folder "
                        "there would mix its videos and reports with them\n"
                        "  use --out for a new or empty folder"
                    )
            return cls(run_dir, lock, RunState.open(run_dir))
        except BaseException:
            lock.release()
            raise

    @classmethod
    def existing(cls, run_dir: Path) -> RunFolder:
        """``resume``, ``rerun``: a folder that has a ledger."""
        require_ledger(run_dir)
        lock = RunFolderLock.acquire(run_dir)
        try:
            return cls(run_dir, lock, RunState.open(run_dir))
        except BaseException:
            lock.release()
            raise

    def close(self) -> None:
        try:
            self.state.close()
        finally:
            self.lock.release()

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, exc_type: object, *exc_info: object) -> None:
        if exc_type is None:
            self.close()
            return
        with contextlib.suppress(Exception):  # keep the error that is on its way out
            self.close()
        self.lock.release()

    def guard(self) -> str | None:
        """For the engine's watch: the lock file must stay the one this run holds."""
        if self.lock.still_ours():
            return None
        return f"{self.lock.path} was removed while this run held it: another run could start"

    def check_api(self, api: str) -> None:
        """Task ids belong to the API that created them: polling them elsewhere would mark
        paid tasks as not found. A folder is bound once it has sent something."""
        bound_to = self.state.meta().get("api", api)
        if same_api(bound_to, api):
            return
        if self.state.sent_count():
            raise RunFolderError(
                f"{self.run_dir} holds tasks of {bound_to}, not {api}\n"
                "  use --out for a separate run folder"
            )

    def sync(self, planned: Sequence[PlannedTask]) -> SyncSummary:
        """Make the ledger ask for what the manifest asks for (see ``RunState.sync_plan``)."""
        try:
            result = self.state.sync_plan(planned)
        except PlanConflict as conflict:
            raise RunFolderError(
                f"{len(conflict.keys)} task(s) in {self.run_dir} were already sent with a "
                f"different request: {', '.join(conflict.keys[:10])}\n"
                "  use --out for a new run folder, or give the changed rows new ids"
            ) from None
        asked = sorted({t.chain for t in planned if t.stitch and t.chain is not None})
        self.state.set_meta(films=json.dumps(asked))  # run's end makes these chains' films
        pending = len(self.state.tasks([TaskStatus.PENDING]))
        return SyncSummary(len(planned), result.added, pending, result.retired)

    def choose_reruns(
        self,
        statuses: Sequence[str],
        keys: Sequence[str],
        classes: Collection[FailureClass] = RERUN_BY_DEFAULT,
    ) -> tuple[list[TaskRecord], list[TaskRecord]]:
        """The tasks chosen by status or key, and the failed ones left out for their
        cause (``classes``: the causes resent; a key named is taken whatever its
        cause). A key that is unknown, or whose task is still running in this folder's
        view, is refused: a running task must not get a second, paid twin."""
        records = {r.task_key: r for r in self.state.tasks()}
        missing = [k for k in keys if k not in records]
        if missing:
            raise RunFolderError(f"no such task key: {', '.join(missing)}")
        busy = [k for k in keys if records[k].status not in SETTLED]
        if busy:
            raise RunFolderError(
                f"not finished, so not rerun: {', '.join(busy)} (resume finishes them first)"
            )
        chosen: list[TaskRecord] = []
        left_out: list[TaskRecord] = []
        for record in records.values():
            if record.task_key in keys:
                chosen.append(record)
            elif record.status in statuses:
                unsendable = record.status == TaskStatus.FAILED and (
                    failure_class(record.error) not in classes
                )
                (left_out if unsendable else chosen).append(record)
        child_of = {r.parent: r for r in records.values() if r.parent is not None}
        linked = chosen + made_links(chosen, child_of.get)
        return sorted(linked, key=lambda r: r.position), left_out


def same_api(a: str, b: str) -> bool:
    return a == b or api_identity(a) == api_identity(b)


# What a run folder holds before its ledger exists (the lock, the log of a refused run).
_OWN_FILES = frozenset({LOCK_FILE, RUN_LOG, STATE_FILE, f"{STATE_FILE}-wal", f"{STATE_FILE}-shm"})


def _check_out(run_dir: Path) -> None:
    """A run folder is a folder of its own: not the root or the home folder (its files
    would go among everything), and not inside another run folder's ``videos/``."""
    where = run_dir.expanduser().absolute()
    if where in (Path(where.anchor), Path.home()):
        raise RunFolderError(
            f"{run_dir} is {'the root folder' if where == Path(where.anchor) else 'your home'}"
            ": a run folder needs a folder of its own (e.g. --out outputs/tonight)"
        )
    for parent in where.parents:
        if parent.name == "videos" and (parent.parent / STATE_FILE).exists():
            raise RunFolderError(
                f"{run_dir} is inside the videos folder of the run folder {parent.parent}: "
                "use --out for a folder outside it"
            )


def _not_ours(run_dir: Path) -> list[str]:
    if not run_dir.is_dir():
        return []
    with os.scandir(run_dir) as entries:
        return sorted(
            e.name for e in entries if e.name not in _OWN_FILES and not e.name.startswith(".")
        )


def require_ledger(run_dir: Path) -> None:
    if not (run_dir / STATE_FILE).is_file():
        raise RunFolderError(f"{run_dir} is not a run folder (no {STATE_FILE})")


def _has(path: Path) -> bool:
    if path.is_dir():
        with os.scandir(path) as entries:
            return any(entries)
    return path.exists()
