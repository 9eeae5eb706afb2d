"""Logging set-up: the console, and ``run.log`` in the run folder; never the API key.

The key is kept out of every message by construction (it lives only in one header of
the client), and this filter is the second line of defence: whatever a library or a
server echo puts in a record, the secret is replaced before any handler writes it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from runner.core.redact import scrub, terminal_safe

RUN_LOG = "run.log"
_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_OURS = "_kling_batch_handler"


class RedactSecrets(logging.Filter):
    """Every line as it may be written: no secret, and no terminal control (a row id
    with an escape sequence must not rewrite the console, nor ``cat run.log``)."""

    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        message = terminal_safe(scrub(message, self.secrets))
        if record.exc_text:
            record.exc_text = scrub(record.exc_text, self.secrets)
        record.msg, record.args = message, None
        return True


def setup_logging(
    run_dir: Path | None,
    *,
    verbose: bool = False,
    secrets: Iterable[str] = (),
    quiet: bool = False,
) -> None:
    """Console at INFO (DEBUG with -v; WARNING when ``quiet``: a notebook's cell) and,
    with a run folder, everything in run.log."""
    root = logging.getLogger()
    for handler in list(root.handlers):  # only ours: an embedding program keeps its own
        if getattr(handler, _OURS, False):
            root.removeHandler(handler)
            handler.close()
    redact = RedactSecrets(secrets)
    console = logging.StreamHandler()
    console.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    console.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    console.addFilter(redact)
    setattr(console, _OURS, True)
    root.addHandler(console)
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(run_dir / RUN_LOG, encoding="utf-8")
        to_file.setLevel(logging.DEBUG)
        to_file.setFormatter(logging.Formatter(_FORMAT))
        to_file.addFilter(redact)
        setattr(to_file, _OURS, True)
        root.addHandler(to_file)
    root.setLevel(logging.DEBUG)
    for noisy in ("aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_log_path() -> Path | None:
    """The ``run.log`` this process writes to, if :func:`setup_logging` gave it one."""
    for handler in logging.getLogger().handlers:
        if getattr(handler, _OURS, False) and isinstance(handler, logging.FileHandler):
            return Path(handler.baseFilename)
    return None


def console_to(stream: IO[str], level: int = logging.WARNING) -> Callable[[], None]:
    """Point our console handler at ``stream`` (a live display's, so records print above
    it) and quiet it to ``level`` (the panel shows progress; run.log keeps everything).
    Returns the function that undoes it."""
    changed = []
    for handler in logging.getLogger().handlers:
        if getattr(handler, _OURS, False) and isinstance(handler, logging.StreamHandler):
            if isinstance(handler, logging.FileHandler):
                continue
            # Save the stream itself: setStream returns None when it is already ``stream``
            # (a live panel on stderr), and restoring None breaks every later record.
            changed.append((handler, handler.stream, handler.level))
            handler.setStream(stream)
            handler.setLevel(max(handler.level, level))

    def restore() -> None:
        for handler, previous, previous_level in changed:
            handler.setStream(previous)
            handler.setLevel(previous_level)

    return restore


class SurvivingStream:
    """A console stream that outlives its reader: ``kling-batch run ... | head -1``
    closes the pipe after one line, and a write then raises ``BrokenPipeError``. The
    batch must not stop for that, nor change its exit code: the first failed write
    points the file descriptor at ``/dev/null`` (so Python's own flush at exit is
    harmless too), and ``run.log`` keeps everything from then on."""

    def __init__(self, stream: IO[str]):
        self._stream = stream
        self.lost = False

    def write(self, text: str) -> int:
        if not self.lost:
            try:
                return self._stream.write(text)
            except (BrokenPipeError, ValueError, OSError):
                self._lose()
        return len(text)

    def flush(self) -> None:
        if not self.lost:
            try:
                self._stream.flush()
            except (BrokenPipeError, ValueError, OSError):
                self._lose()

    def _lose(self) -> None:
        self.lost = True
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...
        return getattr(self._stream, name)


def survive_closed_console() -> None:
    """Wrap ``sys.stdout`` and ``sys.stderr`` in :class:`SurvivingStream` (once)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, SurvivingStream):
            setattr(sys, name, SurvivingStream(stream))
