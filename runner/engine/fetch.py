"""Download finished videos before their links expire.

Video links are pre-signed object-store URLs on another host. They are fetched with a
session of their own that carries no API key at all, so the key cannot leak to that
host, even through a redirect. A file is written under a ``.part`` name, flushed to
disk and renamed, so a crash never leaves a half video that looks whole.

A link that answers 401/403/404/410 has expired (or been revoked): we ask Task Result
for a fresh one (a poll, within the poll rate limit) rather than paying for a new task,
and only when no fresh link works is the task ``expired``. Any other failure (network,
disk) leaves the task ``succeeded`` without a file, so the next ``run`` tries again.

Downloads go soonest-to-die first: a link's expiry is read from its own signature
(``runner.api.links``), and Task Result may never sign it anew. What a refresh shows (a new
signing, or the same link) is learned of the API (``runner.api.learned``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import random
import time
from pathlib import Path
from typing import BinaryIO

import aiohttp

from jobs import request_from_json
from runner.api.client import NovitaClient
from runner.api.learned import LINKS, SAME_LINK, SIGNS_ANEW, Learned
from runner.api.links import link_expiry, same_signature, signs_anew
from runner.core.clock import SYSTEM_CLOCK, Clock
from runner.core.crash import machine_problem
from runner.core.errors import KlingBatchError, MachineTrouble, UrlExpired, VideoDamaged
from runner.core.records import TaskRecord
from runner.engine.rate_limits import EndpointLimiter
from runner.engine.retry import DEFAULT_LIMITS, Action, RetryLimits, after_download_error
from runner.engine.stopping import StopSwitch
from runner.ledger.transitions import RunState
from runner.media.formats import SUFFIXES, check_video, sniff
from runner.media.mp4 import Mp4Check
from runner.media.picture_pool import first_frame_sent
from runner.media.sidecars import VideoTags, tag_video, video_story, write_poster, write_story
from runner.media.thumbs import source_thumbnail

log = logging.getLogger(__name__)

EXPIRED_STATUSES = frozenset({401, 403, 404, 410})
CHUNK = 1 << 16
WRITE_BATCH = 4 << 20  # a large video goes to disk in pieces of this size as it arrives
DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=900, sock_connect=15, sock_read=60)


async def download(
    session: aiohttp.ClientSession,
    url: str,
    dest: Path,
    expected_s: float | None = None,
    tags: VideoTags | None = None,
) -> tuple[Path, int, Mp4Check]:
    """Stream ``url`` into ``dest`` atomically; returns where it went (``dest``, or its
    name with the suffix of what arrived: a GIF is kept as ``.gif``), the bytes written
    and what the check found. A file that is cut or damaged is never given a whole
    file's name: it raises :class:`VideoDamaged` (see ``runner.media.mp4`` and
    ``runner.media.formats``).

    The disk work (open, write, fsync, rename) runs in a thread, never on the event
    loop: a real video is 5 to 20 MB, and an fsync of that on the loop would hold every
    poll and submit until the disk is done. A small file costs one thread hop; a large
    one is written in ``WRITE_BATCH`` pieces as it arrives."""
    partial = Path(f"{dest}.part")
    pending: list[bytes] = []
    size = written = 0
    out: BinaryIO | None = None
    async with session.get(url, timeout=DOWNLOAD_TIMEOUT) as resp:
        if resp.status in EXPIRED_STATUSES:
            raise UrlExpired(f"video link answered HTTP {resp.status}")
        resp.raise_for_status()
        announced = resp.content_length
        try:
            async for chunk in resp.content.iter_chunked(CHUNK):
                pending.append(chunk)
                size += len(chunk)
                if size >= WRITE_BATCH:
                    if out is None:
                        out = await asyncio.to_thread(partial.open, "wb")
                    await asyncio.to_thread(out.writelines, pending)
                    written, pending, size = written + size, [], 0
            total = written + size
            if announced is not None and total != announced:
                raise VideoDamaged(f"cut short: {total:,} of {announced:,} bytes arrived")
            final, check = await asyncio.to_thread(
                _finish, partial, dest, out, pending, expected_s, tags
            )
        except BaseException:
            if out is not None:
                await asyncio.to_thread(out.close)
            # A half video must not hold a full disk's last space, nor outlive a crash.
            await asyncio.to_thread(partial.unlink, missing_ok=True)
            raise
    return final, final.stat().st_size, check  # after tagging: the size the ledger checks


def _finish(
    partial: Path,
    dest: Path,
    out: BinaryIO | None,
    rest: list[bytes],
    expected_s: float | None,
    tags: VideoTags | None,
) -> tuple[Path, Mp4Check]:
    """In a thread: the last bytes, flushed to disk, checked as what they are, tagged
    (an MP4; then checked again), then the name a whole file has, and its poster. A
    file that is not whole is removed: the next try starts afresh."""
    with out or partial.open("wb") as handle:
        handle.writelines(rest)
        handle.flush()
        os.fsync(handle.fileno())
    kind = sniff(partial)
    check = check_video(partial, kind, expected_s)
    if not check.whole:
        partial.unlink(missing_ok=True)
        raise VideoDamaged(check.problem or "damaged")
    if tags is not None and kind == "mp4":
        check = tag_video(partial, tags, expected_s) or check
    final = dest.with_suffix(SUFFIXES[kind])
    os.replace(partial, final)
    write_poster(final)
    return final, check


def _keep_beside(video: Path, run_dir: Path, record: TaskRecord, check: Mp4Check) -> None:
    """In a thread: the video's story, and its source picture's thumbnail for the
    reports (made now, while the night waits on the network, not at its end)."""
    write_story(video, video_story(record, check))
    source_thumbnail(run_dir, first_frame_sent(record, run_dir))


def _tags(record: TaskRecord) -> VideoTags:
    """A video's own title and comment: its task key and its prompt."""
    prompt = request_from_json(record.request_json).get("prompt")
    return VideoTags(title=record.task_key, comment=str(prompt or ""))


class Fetcher:
    def __init__(
        self,
        state: RunState,
        client: NovitaClient,
        poll_limiter: EndpointLimiter,
        stop: StopSwitch,
        videos_dir: Path,
        *,
        workers: int = 4,
        max_refreshes: int = 2,
        limits: RetryLimits = DEFAULT_LIMITS,
        retry_base_s: float = 1.0,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        learned: Learned | None = None,
    ):
        self.state = state
        self.client = client
        self.learned = learned
        self.poll_limiter = poll_limiter
        self.stop = stop
        self.videos_dir = videos_dir
        self.workers = workers
        self.max_refreshes = max_refreshes
        self.limits = limits
        self.clock = clock
        self.rng = rng or random.Random()
        self.retry_base_s = retry_base_s
        self.downloaded = 0
        # Soonest-to-die first (no known expiry: last, in order); then the workers' ends.
        self._queue: asyncio.PriorityQueue[tuple[float, int, str | None]] = asyncio.PriorityQueue()
        self._order = itertools.count()

    def add(self, task_key: str, expires_at: float | None = None) -> None:
        """Fetch this task's video, before those whose links die later."""
        due = math.inf if expires_at is None else expires_at
        self._queue.put_nowait((due, next(self._order), task_key))

    def close(self) -> None:
        """No more videos will come: each worker ends once the queue before it is done."""
        for _ in range(self.workers):
            self._queue.put_nowait((math.inf, next(self._order), None))

    async def run(self) -> None:
        self.videos_dir.mkdir(parents=True, exist_ok=True)
        async with aiohttp.ClientSession() as session, asyncio.TaskGroup() as group:
            for _ in range(self.workers):
                group.create_task(self._worker(session))

    async def _worker(self, session: aiohttp.ClientSession) -> None:
        while (key := (await self._queue.get())[2]) is not None:
            if not self.stop.is_set:
                await self.fetch_one(session, key)

    async def fetch_one(self, session: aiohttp.ClientSession, key: str) -> None:
        record = self.state.get(key)
        url = record.video_url
        if (
            record.video_url_expires_at is not None
            and record.video_url_expires_at < self.clock.time()
        ):
            url = None  # known to be stale: don't waste a request on it
        dest = self.videos_dir / record.video_name
        expected_s = float(request_from_json(record.request_json).duration or 0) or None
        refreshes = retries = 0
        last_error = "no video link in the answer"
        last_url, refused_url = record.video_url, None
        while not self.stop.is_set:
            if url is None:
                if refreshes >= self.max_refreshes:
                    self.state.mark_expired(key, f"video not downloaded: {last_error}")
                    log.warning("%s: expired: %s", key, last_error)
                    return
                refreshes += 1
                url, last_error = await self._fresh_url(
                    key, record.task_id, last_url, refused_url, last_error
                )
                if url is None:
                    continue
                last_url = url
            try:
                saved, size, check = await download(session, url, dest, expected_s, _tags(record))
            except UrlExpired as exc:
                last_error, refused_url, url = str(exc), url, None
                log.info("%s: %s; asking for a fresh link", key, exc)
                continue
            except (aiohttp.ClientError, TimeoutError, OSError, VideoDamaged) as exc:
                if (problem := machine_problem(exc)) is not None:  # the disk, not the link
                    self.state.note_download_failed(key, f"download failed: {problem}")
                    self.stop.trip(f"stopped downloading: {problem}", MachineTrouble(problem))
                    return
                damaged = isinstance(exc, VideoDamaged)
                last_error = f"video {exc}" if damaged else f"{type(exc).__name__}: {exc}"
                decision = after_download_error(
                    retries, rng=self.rng, base_s=self.retry_base_s, limits=self.limits
                )
                if decision.action == Action.GIVE_UP:
                    # Not an expired link: keep the task succeeded; `run` again retries.
                    self.state.note_download_failed(
                        key, f"download failed: {last_error}", last_error if damaged else None
                    )
                    log.warning("%s: download failed, run again to retry: %s", key, last_error)
                    return
                log.info("%s: %s; fetching it again", key, last_error)
                retries += 1
                await self.stop.sleep(decision.delay_s)
                continue
            relative = str(saved.relative_to(self.videos_dir.parent))
            await asyncio.to_thread(_keep_beside, saved, self.videos_dir.parent, record, check)
            self.state.mark_downloaded(key, relative, size, check.duration_s, check.problem)
            self.downloaded += 1
            log.info("%s: downloaded %d bytes to %s", key, size, saved.name)
            if check.problem:
                log.warning("%s: kept, but its video %s", key, check.problem)
            return

    async def _fresh_url(
        self, key: str, task_id: str | None, old: str | None, refused: str | None, last_error: str
    ) -> tuple[str | None, str]:
        """Ask Task Result for the video's link again: (a link worth trying, or None;
        why not). The very link the video host already refused, past its own signed
        expiry, is not tried again: the API does not sign links anew (learned, as is a
        new signing). Our clock alone never condemns a link: a machine clock hours off
        would condemn every one; the host's refusal is the evidence."""
        if not task_id:
            return None, last_error
        await self.poll_limiter.acquire()
        try:
            result = await self.client.task_result(task_id)
        except KlingBatchError as exc:
            log.info("%s: could not refresh the video link: %s", key, exc)
            return None, last_error
        if not result.video_url:
            return None, last_error
        now = self.clock.time()
        link = link_expiry(result.video_url, result.video_url_ttl_s, now)
        self.state.set_video_url(key, result.video_url, link.at)
        anew = signs_anew(old, result.video_url, result.video_url_ttl_s, now) if old else None
        if anew is not None and self.learned is not None:
            self.learned.learn(LINKS, SIGNS_ANEW if anew else SAME_LINK, "seen")
        dead = link.basis == "signature" and link.at is not None and link.at <= now
        if dead and refused is not None and same_signature(refused, result.video_url):
            died = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(link.at))
            return None, (
                f"Task Result gives again the link the video host refused, dead since {died} "
                "by its own signature (the API does not sign links anew)"
            )
        return result.video_url, last_error
