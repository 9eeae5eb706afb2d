"""Why a task failed, as one of four causes: what a person (and ``rerun``) does next
depends on it, and the reason text alone does not say it at a glance.

- ``moderation``: refused or failed for its content; sent again, it is refused again;
- ``input``: the API refused the request's fields or its image (or kling-batch could
  not read or make the picture at submit time); it needs an edit first;
- ``account``: billing or permission; it may go through once the account is fixed;
- ``provider``: anything else the API failed (or Task Result never knew the task):
  worth a rerun as it is.

The API's UPPER_SNAKE codes decide first (``../shared/novita-api.md``); words only when
no code is known, for a task's free-text reason. Both tables are here, pinned by a
table test.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from enum import StrEnum


class FailureClass(StrEnum):
    MODERATION = "moderation"
    INPUT = "input"
    PROVIDER = "provider"
    ACCOUNT = "account"


# Resent by ``rerun --failed`` unless the user names other classes (``--class``).
RERUN_BY_DEFAULT = frozenset({FailureClass.PROVIDER, FailureClass.ACCOUNT})

CODES: dict[str, FailureClass] = {
    "ILLEGAL_PROMPT": FailureClass.MODERATION,
    "ILLEGAL_IMAGE_CONTENT": FailureClass.MODERATION,
    "INVALID_REQUEST_BODY": FailureClass.INPUT,
    "FEATURE_NOT_ALLOWED": FailureClass.ACCOUNT,
    "API_NOT_ALLOWED": FailureClass.ACCOUNT,
    "NEED_REAL_NAME_VERIFY": FailureClass.ACCOUNT,
    "INVALID_API_KEY": FailureClass.ACCOUNT,
    "MISSING_API_KEY": FailureClass.ACCOUNT,
    # BILLING_FAILED is a 500 (a billing step of the API's failed), not the account's.
    "BILLING_FAILED": FailureClass.PROVIDER,
}
# Code families: the first prefix that matches decides.
PREFIXES: tuple[tuple[str, FailureClass], ...] = (
    ("INVALID_IMAGE_", FailureClass.INPUT),
    ("IMAGE_", FailureClass.INPUT),
    ("BILLING_", FailureClass.ACCOUNT),
)
# Words of a free-text reason (lower case), looked for when no code is known.
WORDS: tuple[tuple[str, FailureClass], ...] = (
    ("moderat", FailureClass.MODERATION),
    ("sensitive", FailureClass.MODERATION),
    ("inappropriate", FailureClass.MODERATION),
    ("nsfw", FailureClass.MODERATION),
    ("content policy", FailureClass.MODERATION),
    ("violat", FailureClass.MODERATION),
    ("prohibited", FailureClass.MODERATION),
    ("could not be read at submit time", FailureClass.INPUT),
    ("picture could not be made", FailureClass.INPUT),
    ("as an http(s) url only", FailureClass.INPUT),  # a local end frame the API will not take
    ("refused in every form", FailureClass.INPUT),  # runner.engine.submit: no wire form was taken
    ("insufficient balance", FailureClass.ACCOUNT),
    ("permission", FailureClass.ACCOUNT),
)
_CODE = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")


def failure_class(reason: str | None) -> FailureClass:
    """The cause of a failure from its reason as the ledger keeps it (``HTTP 400
    ILLEGAL_PROMPT: ...`` for a refused submit, the task's reason verbatim otherwise)."""
    text = reason or ""
    for code in _CODE.findall(text):
        if code in CODES:
            return CODES[code]
        for prefix, cause in PREFIXES:
            if code.startswith(prefix):
                return cause
    lowered = text.lower()
    for word, cause in WORDS:
        if word in lowered:
            return cause
    return FailureClass.PROVIDER


def common_reason(reasons: Iterable[str | None]) -> tuple[str, int]:
    """The most common reason among ``reasons`` and how often it came (for the
    message of a stopped night: what the failures had in common)."""
    counted = Counter(" ".join((r or "no reason given").split()) for r in reasons)
    reason, times = counted.most_common(1)[0] if counted else ("no reason given", 0)
    return reason, times
