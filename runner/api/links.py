"""When a video link dies: read from its own signature, not from when we polled.

Novita's video links are pre-signed object-store URLs. Nothing says Task Result signs
them anew on every poll: it may hand back the link it signed when the task finished,
which then dies ``X-Amz-Expires`` seconds after ``X-Amz-Date``, however late we asked.
So the expiry comes from the link itself wherever it says so (S3's SigV4, Google's
V4, and the ``Expires=`` epoch of S3 SigV2, CloudFront and OSS), and only otherwise
from ``video_url_ttl`` counted from the answer. Pure functions, pinned by a table test.
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

# (the signing time, its lifetime in seconds) query keys, by signing scheme.
_DATED = (("x-amz-date", "x-amz-expires"), ("x-goog-date", "x-goog-expires"))
_EPOCH = "expires"  # S3 SigV2, CloudFront, Alibaba OSS: the moment it dies, in epoch s
_SIGNATURES = ("x-amz-signature", "x-goog-signature", "signature")
_STAMP = "%Y%m%dT%H%M%SZ"  # 20260105T143000Z, UTC
SIGNING_GRAIN_S = 2.0  # a new signing this long after the old one shows a later date


@dataclass(frozen=True)
class LinkExpiry:
    """When a link dies (wall clock) and how that is known: ``signature`` (the link
    says so), ``ttl`` (the answer's ``video_url_ttl`` from when it came), or ``unknown``
    (``at`` is None)."""

    at: float | None
    basis: str


def link_expiry(url: str | None, ttl_s: float | None, answered_at: float) -> LinkExpiry:
    """The expiry of a video link given at ``answered_at`` with ``ttl_s`` (either may
    be missing). The signature wins: it is what the object store checks."""
    signed = signed_expiry(url) if url else None
    if signed is not None:
        return LinkExpiry(signed, "signature")
    if ttl_s:
        return LinkExpiry(answered_at + ttl_s, "ttl")
    return LinkExpiry(None, "unknown")


def signed_expiry(url: str) -> float | None:
    """The expiry a pre-signed URL carries, in epoch seconds, or None."""
    query = _query(url)
    for date_key, expires_key in _DATED:
        if date_key in query and expires_key in query:
            try:
                signed_at = calendar.timegm(time.strptime(query[date_key], _STAMP))
                return signed_at + float(query[expires_key])
            except (ValueError, OverflowError):
                return None
    if _EPOCH in query:
        try:
            return float(query[_EPOCH])
        except ValueError:
            return None
    return None


def signed_at(url: str, ttl_s: float | None) -> float | None:
    """When a link was signed (epoch s): its own date, or its expiry less the answer's
    ``video_url_ttl``; None when neither tells."""
    query = _query(url)
    for date_key, _ in _DATED:
        if date_key in query:
            try:
                return float(calendar.timegm(time.strptime(query[date_key], _STAMP)))
            except (ValueError, OverflowError):
                return None
    expiry = signed_expiry(url)
    return expiry - ttl_s if expiry is not None and ttl_s else None


def signs_anew(old: str, new: str, ttl_s: float | None, now: float) -> bool | None:
    """What a second answer about one video shows: True, a new signing; False, the
    same link, signed long enough ago that a new signing would show a later date (a
    signature is dated to the second); None, it cannot tell yet."""
    if not same_signature(old, new):
        return True
    signed = signed_at(old, ttl_s)
    return False if signed is not None and now - signed >= SIGNING_GRAIN_S else None


DOCUMENTED_TTL_S = 3600.0  # video_url_ttl in every example of Task Result
TYPICAL_TASK_S = 300.0  # a Kling Pro clip takes minutes (providers quote 1 to 5)


def run_outlives_links(
    tasks: int, submits_per_s: float, ttl_s: float = DOCUMENTED_TTL_S
) -> float | None:
    """For ``--no-download``: the seconds a run of ``tasks`` would take (the submits at
    their rate, then a typical task) when that is longer than a link lives, else None:
    the first tasks' links would then die before the run ends."""
    run_s = tasks / max(submits_per_s, 1e-9) + TYPICAL_TASK_S
    return run_s if run_s > ttl_s else None


def same_signature(first: str, second: str) -> bool:
    """Whether two links to a video are the same signing (so a second poll did not sign
    it anew): their signatures when they have them, else the whole URLs."""
    a, b = _query(first), _query(second)
    for key in _SIGNATURES:
        if key in a or key in b:
            return a.get(key) == b.get(key)
    return first == second


def _query(url: str) -> dict[str, str]:
    """The query's keys in lower case (signers differ in case; a key appears once)."""
    try:
        pairs = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    except ValueError:
        return {}
    return {key.lower(): value for key, value in pairs}
