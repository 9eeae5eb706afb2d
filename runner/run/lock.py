"""One process per run folder: an OS lock held for the whole life of a spending command.

Two runners on one ledger each send the pending rows they read at start, so every row
they share is paid twice. ``fcntl.flock`` on ``run.lock`` in the folder prevents that:
the kernel releases the lock when the process ends however it ends (exit, Ctrl-C,
``kill -9``, a reboot), so there is never a stale lock to clean up by hand. The file also
says who holds it (pid, host, since when, the command), for the message the second
process prints and for ``status``.

Readers (``status``, ``report``, ``validate``) take no lock: they only *test* it
(:func:`lock_holder`), with a shared lock held for microseconds. A spending command
that meets such a test tries again for :data:`ACQUIRE_PATIENCE_S` before giving up.

On a network file system (NFS), Linux emulates ``flock`` with POSIX record locks that
the server keeps, so two machines exclude each other as long as the server's lock
service works; some NAS set-ups and old NFS versions (``nolock`` mounts) do not lock
across machines at all. Keep run folders on a local disk, or run one machine per folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from runner.core.errors import FolderLocked, RunFolderError
from runner.core.redact import redact_argv, redact_command_line

LOCK_FILE = "run.lock"
ACQUIRE_PATIENCE_S = 0.5  # a reader's test holds the lock for microseconds
_RETRY_EVERY_S = 0.02


@dataclass(frozen=True)
class LockHolder:
    pid: int
    host: str
    since: float  # wall clock
    command: str

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"pid {self.pid} on {self.host}, since {when}: {redact_command_line(self.command)}"


class RunFolderLock:
    """The exclusive lock of one run folder; release it with :meth:`release` (or let
    the process end)."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd
        self._inode = os.fstat(fd).st_ino

    @classmethod
    def acquire(cls, run_dir: Path, command: str | None = None) -> RunFolderLock:
        """Take the folder or raise :class:`FolderLocked` naming who has it."""
        path = run_dir / LOCK_FILE
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise RunFolderError(
                f"{run_dir} cannot be written ({exc.strerror}): a run keeps its ledger and "
                "lock there; make it writable, or use --out for another folder"
            ) from None
        deadline = time.monotonic() + ACQUIRE_PATIENCE_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise _locked(run_dir, read_holder(path)) from None
                time.sleep(_RETRY_EVERY_S)
        holder = LockHolder(os.getpid(), socket.gethostname(), time.time(), command or _command())
        data = json.dumps(asdict(holder)).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
        return cls(path, fd)

    def still_ours(self) -> bool:
        """False when ``run.lock`` was deleted or replaced: a second process could then
        take a lock of its own, so the run must stop."""
        try:
            return os.stat(self.path).st_ino == self._inode
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunFolderLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def lock_holder(run_dir: Path) -> LockHolder | None:
    """Who holds the folder now, or None; takes no lock (works on a read-only folder)."""
    path = run_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_holder(path) or LockHolder(0, "?", 0.0, "(unknown)")
    except OSError:
        return None  # a file system without locks: nothing can be said
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def read_holder(path: Path) -> LockHolder | None:
    """What the lock file says (it may be from a run that has ended)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return LockHolder(
            int(data["pid"]), str(data["host"]), float(data["since"]), data["command"]
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _locked(run_dir: Path, holder: LockHolder | None) -> FolderLocked:
    who = holder.describe() if holder else "another process (it did not say who)"
    return FolderLocked(
        f"{run_dir} is in use by {who}\n"
        "  one process per run folder: wait for it to end (`kling-batch status "
        f"{run_dir}` shows its progress), or stop it first"
    )


def _command() -> str:
    """This process's command line, without its secrets (``runner.core.redact``)."""
    return " ".join(["kling-batch", *redact_argv(sys.argv[1:])])
