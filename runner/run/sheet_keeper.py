"""The contact sheet drawn while the night runs, so that its end does not draw it all.

Every :data:`KEEP_EVERY_S` a worker process looks at the ledger (read only: the night
writes it) and draws each page none of whose tasks can still change and that is not yet
drawn from what it shows (``write_contact_sheet(finished_only=True)``). The night's end
then draws only the pages whose tasks ended after the last look: a few for any size of
night, instead of 334 pages (45 s) for 20,000 tasks.

The work is in a process of its own on one core: drawing is CPU work that would hold
the event loop's GIL (a pass over 20,000 tasks plans pages for ~1 s), and the night
keeps the other cores. A pass that fails (a full disk) is logged and the night goes
on: the night's end draws what the keeper did not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from pathlib import Path

from runner.core.pool import one_worker
from runner.ledger.file import Ledger
from runner.reports.sheet import write_contact_sheet

log = logging.getLogger(__name__)

KEEP_EVERY_S = 60.0


def draw_finished_pages(run_dir: Path) -> int:
    """In the keeper's process: the finished pages not yet drawn, drawn on this core;
    how many pages the sheet has."""
    state = Ledger.open(run_dir, read_only=True)
    try:
        records, reviews = state.tasks(), state.reviews()
    finally:
        state.close()
    pages = write_contact_sheet(
        records, run_dir, run_dir.name, finished_only=True, one_core=True, reviews=reviews
    )
    return len(pages)


@contextlib.asynccontextmanager
async def sheet_kept(
    run_dir: Path,
    every_s: float = KEEP_EVERY_S,
    after_pass: Callable[[], None] | None = None,
) -> AsyncIterator[None]:
    """Draw finished pages every ``every_s`` while the body runs; on leaving, wait for
    a pass under way (the night's end writes the same files). ``after_pass`` is told
    when each pass ends (tests wait on it instead of on the clock)."""
    with one_worker() as worker:
        keeper = asyncio.create_task(_keep(worker, run_dir, every_s, after_pass))
        try:
            yield
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper


async def _keep(
    worker: Executor, run_dir: Path, every_s: float, after_pass: Callable[[], None] | None
) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(every_s)
        drawing = loop.run_in_executor(worker, draw_finished_pages, run_dir)
        try:
            await asyncio.shield(drawing)
        except asyncio.CancelledError:
            await asyncio.wait([drawing])  # the pass finishes before the night's end starts
            raise
        except Exception as exc:  # a sheet is never worth a night
            log.warning("contact sheet not drawn during the night (the end draws it): %s", exc)
        if after_pass is not None:
            after_pass()
