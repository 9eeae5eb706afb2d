"""The user's cache folder: what kling-batch keeps between run folders (the pictures'
check cache, what first contact learned of each API). Nothing there is needed: a cache
that cannot be read or written is no cache, never an error."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

CACHE_ENV = "KLING_BATCH_CACHE"


def user_cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    """``$KLING_BATCH_CACHE``, else ``kling-batch`` in the user's cache folder
    (``$XDG_CACHE_HOME``, else ``~/.cache``)."""
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV])
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kling-batch"
