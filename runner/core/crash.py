"""What the user reads when something goes wrong that no other layer handled.

No Python traceback reaches a user. A full disk or a folder that cannot be written is a
state of the machine, said in one line with what to do (exit 3: state saved, ``resume``
continues once it is mended). Anything else is an internal error: one line, the
traceback kept in ``run.log`` (or, without a run folder, a crash log in the temporary
folder), and an exit code of its own, so that a script can tell a bug from a failed task.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

from runner.core.logs import run_log_path

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # EFBIG: no room for this file
_NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def leaves(exc: BaseException) -> Iterator[BaseException]:
    """The exceptions inside ``exc`` (a TaskGroup raises them grouped), and ``exc``."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from leaves(inner)
    else:
        yield exc


def machine_problem(exc: BaseException) -> str | None:
    """A sentence for a full disk or an unwritable folder anywhere in ``exc``, or None."""
    for leaf in leaves(exc):
        text = str(leaf).lower()
        code = getattr(leaf, "errno", None)
        if code in _DISK_FULL or "disk is full" in text or "disk i/o error" in text:
            return "the disk is full (or failed) where the run folder is: free some space"
        if code in _NOT_WRITABLE or (
            isinstance(leaf, sqlite3.OperationalError)
            and ("readonly" in text or "unable to open database" in text)
        ):
            return f"a file cannot be written ({leaf}): make the run folder writable"
    return None


def keep_traceback(exc: BaseException) -> Path:
    """Write the traceback where the user can send it: ``run.log`` when this command
    logs to a run folder, else a crash log in the temporary folder. Returns the path."""
    run_log = run_log_path()
    if run_log is not None:
        # At debug level: run.log keeps it, the console (INFO and up) does not show it.
        logging.getLogger(__name__).debug("internal error", exc_info=exc)
        return run_log
    path = Path(tempfile.gettempdir()) / f"kling-batch-crash-{time.strftime('%Y%m%d-%H%M%S')}.log"
    path.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
    return path
