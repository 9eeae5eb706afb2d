"""Exit codes: the contract a script reads (the README's table says the same)."""

from __future__ import annotations

from collections.abc import Mapping

from runner.core.errors import KlingBatchError, RunFolderError, UsageError
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


def exit_code_for_error(error: KlingBatchError) -> int:
    """A typed error that ended a command: refused before sending (2) or a stop (3)."""
    if isinstance(error, UsageError | RunFolderError):
        return EXIT_USAGE
    return EXIT_STOPPED
