"""Work on every core: CPU work (decoding pictures, drawing and encoding a contact
sheet's pages) goes to a pool of processes, since threads share one core under the GIL.
Few items are done here: starting a pool costs more than it saves.

Workers come from a fork server (forking a process that has threads, such as the
embedded simulator's or the disk threads, can copy a lock some thread holds). The
server imports the program's ``__main__`` once (the whole command line: ~0.7 s of one
core) and each worker is a fork of it: :func:`warm_up` starts it early, so that this
import overlaps other work instead of delaying the first pool.
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
    if len(items) < pool_from or _cores() < 2:
        return [work(item) for item in items]
    with _pool(min(len(items), _cores())) as pool:
        return list(pool.map(work, items, chunksize=max(1, len(items) // 64)))


def one_worker() -> Executor:
    """A pool of one process, for work in the background that must not hold this
    process's GIL (the contact sheet kept during the night)."""
    return _pool(1)


def warm_up() -> None:
    """Start the fork server now, if a pool may be wanted later and there is one: it
    does its import while this process goes on (the call itself takes a few ms)."""
    if _cores() >= 2 and _start_method() == "forkserver":
        from multiprocessing import forkserver  # importable only where there is one

        forkserver.ensure_running()


def _cores() -> int:
    return os.cpu_count() or 1


def _start_method() -> str:
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _pool(workers: int) -> Executor:
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(_start_method()))
