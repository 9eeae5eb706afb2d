"""Secrets out of what is shown and kept (a command line's, a text from the network),
and terminal controls out of what is printed.

A command line is visible to every user of the machine (``ps``) and is kept in the run
folder's lock file, shown by ``status`` and by a second run's refusal: so it is kept
with every ``--notify`` URL cut to its scheme and host, and ``--on-finish``'s command
left out (either may hold a token; ``KLING_BATCH_NOTIFY`` keeps them off the command
line altogether). A text that came from the network (an error's message, a task's
reason) has the API key cut out once, where it enters (``runner.api.client``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

REDACTED = "[REDACTED]"
# C0 and C1 controls but the line's own breaks: an ESC sequence in a row id or a file
# name can retitle, clear or rewrite the terminal that prints it.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
for _kept in (0x09, 0x0A):  # a tab, a line break
    _CONTROLS.pop(_kept)


def terminal_safe(text: str) -> str:
    """``text`` with every control character but tab and newline shown as ``\\xNN``."""
    return text.translate(_CONTROLS)


# Options whose value may hold a secret, and how it is shown instead.
_SECRET_OPTIONS = ("--notify", "--on-finish")


def redact_argv(argv: Sequence[str]) -> list[str]:
    """The command line with every secret-bearing option's value replaced."""
    shown: list[str] = []
    hide_next: str | None = None
    for arg in argv:
        if hide_next is not None:
            shown.append(_hidden(hide_next, arg))
            hide_next = None
            continue
        name, equals, value = arg.partition("=")
        if name in _SECRET_OPTIONS and equals:
            shown.append(f"{name}={_hidden(name, value)}")
        else:
            shown.append(_without_credentials(arg))
            hide_next = arg if arg in _SECRET_OPTIONS else None
    return shown


def redact_command_line(text: str) -> str:
    """A command line kept as one string (by an older kling-batch): best effort, word
    by word."""
    return " ".join(redact_argv(text.split(" ")))


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (four characters or more) replaced."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return text


def _hidden(option: str, value: str) -> str:
    if option == "--notify":
        parts = urlsplit(value)
        return f"{parts.scheme}://{parts.hostname or '?'}/{REDACTED}" if parts.scheme else REDACTED
    return REDACTED


def _without_credentials(arg: str) -> str:
    """A URL with ``user:password@`` shows neither."""
    if "://" not in arg or "@" not in arg:
        return arg
    parts = urlsplit(arg)
    if not (parts.username or parts.password):
        return arg
    host = parts.hostname or "?"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return parts._replace(netloc=f"{REDACTED}@{netloc}").geturl()
