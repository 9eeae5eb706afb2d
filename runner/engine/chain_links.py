"""Chain links wait for their parents: a link goes once its parent's video is downloaded
and whole, with that video's last frame as its first (``runner.media.last_frame``).

The submit queue asks :meth:`ChainLinks.more_coming` before it lets its workers go: a
link whose parent may still deliver (it is being sent, made, fetched, or is itself a
link that may still go) keeps them waiting; one whose parent failed, expired, stalled,
is held, or was rejected never goes this run, so the night ends without it (it stays
``pending``: ``status`` says what it waits on, ``rerun --failed`` picks the chain up at
the failed link). A link is sent from the parent's video as it is when the link goes
(``parent_video``, its sha256, kept beside it): a parent made again makes a new link.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import av

from runner.core.records import DOWNLOADED, TaskEvent, TaskRecord, TaskStatus, Verdict
from runner.ledger.transitions import RunState
from runner.media.last_frame import make_link_frame

log = logging.getLogger(__name__)

# A parent in one of these may still deliver a video this run.
_AT_WORK = frozenset({TaskStatus.SUBMITTING, TaskStatus.QUEUED, TaskStatus.PROCESSING})


class ChainLinks:
    """A night's chain links: kept here until their parents' videos are whole, then
    given their first frames and added to the submit queue (a run's listener)."""

    def __init__(self, state: RunState, *, download: bool = True):
        self.state = state
        self.run_dir = state.path.parent
        self.download = download
        self.waiting: dict[str, TaskRecord] = {}  # parent key -> its (pending) link
        self.making: set[str] = set()  # links whose first frame is being made
        self._jobs: set[asyncio.Task[None]] = set()
        self._add: Callable[[TaskRecord], None] = lambda record: None
        self._wake: Callable[[], None] = lambda: None

    def split(self, tasks: list[TaskRecord]) -> list[TaskRecord]:
        """The tasks that may go as they are; the links are kept here until then."""
        ready = []
        for record in tasks:
            if record.parent is None:
                ready.append(record)
            else:
                self.waiting[record.parent] = record
        return ready

    def start(self, add: Callable[[TaskRecord], None], wake: Callable[[], None]) -> None:
        """Links whose parents' videos are here already are made now."""
        self._add, self._wake = add, wake
        for parent_key in list(self.waiting):
            parent = self._parent(parent_key)
            if parent is not None and self._video_here(parent):
                self._make(parent_key)

    def hear(self, event: TaskEvent) -> None:
        """A run's listener: a parent's video downloaded makes its link; any other news
        of a parent wakes the queue, which asks :meth:`more_coming` again."""
        if event.task_key not in self.waiting:
            return
        if event.what == DOWNLOADED:
            self._make(event.task_key)
        self._wake()

    def more_coming(self) -> bool:
        """Whether a link may still join the queue this run."""
        return bool(self.making) or any(self._may_deliver(p) for p in self.waiting)

    def unsent(self) -> dict[str, str]:
        """Each link left waiting, and on what."""
        said = {}
        for parent_key, link in self.waiting.items():
            parent = self._parent(parent_key)
            status = parent.status if parent is not None else "not in this run folder"
            said[link.task_key] = f"its parent {parent_key} is {status}"
        return said

    async def close(self) -> None:
        for job in self._jobs:
            job.cancel()
        await asyncio.gather(*self._jobs, return_exceptions=True)

    # --- inside ---------------------------------------------------------------------

    def _may_deliver(self, parent_key: str, depth: int = 0) -> bool:
        """Whether ``parent_key`` may still have a whole video this run. Asked only
        when no task is ready to go, so a pending parent that is not itself a waiting
        link is held (a canary's gate), not coming."""
        parent = self._parent(parent_key)
        if parent is None or depth > len(self.waiting):
            return False
        if parent.task_key in self.making or parent.status in _AT_WORK:
            return True
        if parent.status == TaskStatus.SUCCEEDED:
            return parent.video_path is None and self.download
        if parent.status == TaskStatus.PENDING and parent.parent is not None:
            waiting = self.waiting.get(parent.parent)
            if waiting is not None and waiting.task_key == parent.task_key:
                return self._may_deliver(parent.parent, depth + 1)
        return False

    def _make(self, parent_key: str) -> None:
        link = self.waiting.pop(parent_key)
        self.making.add(link.task_key)
        job = asyncio.get_running_loop().create_task(self._made(link, parent_key))
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    async def _made(self, link: TaskRecord, parent_key: str) -> None:
        try:
            review = self.state.reviews().get(parent_key)
            if review is not None and review.verdict == Verdict.REJECTED:
                log.warning("%s not sent: its parent %s was rejected", link.task_key, parent_key)
                return
            parent = self.state.get(parent_key)
            assert parent.video_path is not None
            try:
                frame = await asyncio.to_thread(
                    make_link_frame, self.run_dir, self.run_dir / parent.video_path
                )
            except (av.FFmpegError, OSError, ValueError) as exc:
                self.state.mark_failed(
                    link.task_key,
                    f"its first frame, the last of {parent_key}'s video, could not be made: {exc}",
                )
                return
            self.state.set_link_frame(link.task_key, frame.pictures, frame.video_sha256)
            log.info("%s: continues %s from its last frame", link.task_key, parent_key)
            self._add(self.state.get(link.task_key))
        finally:
            self.making.discard(link.task_key)
            self._wake()

    def _parent(self, key: str) -> TaskRecord | None:
        try:
            return self.state.get(key)
        except KeyError:
            return None

    def _video_here(self, parent: TaskRecord) -> bool:
        if parent.status != TaskStatus.SUCCEEDED or not parent.video_path:
            return False
        return (self.run_dir / parent.video_path).is_file()
