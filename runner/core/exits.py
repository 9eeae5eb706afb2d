"""Exit codes: the contract a script reads (the README's table says the same)."""

from __future__ import annotations

from collections.abc import Mapping

from runner.core.errors import (
    BadNight,
    Interrupted,
    KlingBatchError,
    RunFolderError,
    UsageError,
)
from runner.core.records import TaskStatus

EXIT_OK = 0  # every task the manifest asks for succeeded
EXIT_SOME_FAILED = 1  # failed, unknown, expired, pending, or a video not downloaded yet
EXIT_USAGE = 2  # usage, manifest or run-folder problem, or declined: nothing was sent
EXIT_STOPPED = 3  # the API, the network or the machine stopped the run: resume continues
EXIT_STALLED = 4  # nothing failed, but some tasks are stalled: resume polls them again
EXIT_INTERNAL = 70  # sysexits.h EX_SOFTWARE: kling-batch itself went wrong
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM: state saved, resume continues

_SETTLED_OK = frozenset({TaskStatus.SUCCEEDED, TaskStatus.RETIRED, TaskStatus.STALLED})
# ``lost`` is not among them: a task id Task Result never knew is a 1, for a person to see.


def exit_code_for(counts: Mapping[str, int]) -> int:
    """0 when every task the manifest asks for succeeded; 4 when the only thing left is
    stalled tasks (``resume`` later, nothing to rerun); 1 for anything else."""
    if any(n for status, n in counts.items() if status not in _SETTLED_OK):
        return EXIT_SOME_FAILED
    if counts.get(TaskStatus.STALLED):
        return EXIT_STALLED
    return EXIT_OK if counts.get(TaskStatus.SUCCEEDED) else EXIT_SOME_FAILED


def exit_code_of_run(
    counts: Mapping[str, int],
    *,
    videos_missing: int = 0,
    stop: BaseException | None = None,
    stopped: bool = False,
) -> int:
    """The exit code of a run that reached its end or stopped: a bad night is 1 (tasks
    failed; nothing is wrong with the machine), an interrupt 130, any other stop 3;
    else 1 while a video is still to fetch, else what the counts say. (Pinned by a
    table test; the command line and the library both call it.)"""
    if isinstance(stop, BadNight):
        return EXIT_SOME_FAILED
    if stopped:
        return EXIT_INTERRUPTED if isinstance(stop, Interrupted) else EXIT_STOPPED
    return EXIT_SOME_FAILED if videos_missing else exit_code_for(counts)


def exit_code_for_error(error: KlingBatchError) -> int:
    """A typed error that ended a command: refused before sending (2) or a stop (3)."""
    if isinstance(error, UsageError | RunFolderError):
        return EXIT_USAGE
    return EXIT_STOPPED
