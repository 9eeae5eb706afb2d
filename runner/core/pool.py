"""Work on every core: CPU work (decoding pictures, drawing and encoding a contact
sheet's pages) goes to a pool of processes, since threads share one core under the GIL.
Few items are done here: starting a pool costs more than it saves.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

POOL_FROM = 16  # fewer items than this are done in this process


def map_on_every_core(
    work: Callable[[T], R], items: Sequence[T], pool_from: int = POOL_FROM
) -> list[R]:
    """``work`` over ``items``, in order: here for a few, on every core for many."""
    if len(items) < pool_from or (os.cpu_count() or 1) < 2:
        return [work(item) for item in items]
    with _pool(min(len(items), os.cpu_count() or 1)) as pool:
        return list(pool.map(work, items, chunksize=max(1, len(items) // 64)))


def _pool(workers: int) -> Executor:
    """A fork server where there is one: forking a process that has threads (the
    embedded simulator, a test's) can copy a lock some thread holds."""
    methods = multiprocessing.get_all_start_methods()
    method = "forkserver" if "forkserver" in methods else "spawn"
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method))
