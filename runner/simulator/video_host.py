"""The simulator's video host: its second listener, serving each task's video behind a
link signed the way an object store signs (``X-Amz-Date``, ``X-Amz-Expires``, a
signature), so links expire, can be refused, and are checked like the real ones. The
videos are made from each task's own first frame (``video``), or the fixed sample.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from runner.simulator.state import SimTask
from runner.simulator.video import cut_short, gif_from_image, sample_video, video_from_image
from runner.simulator.wire import EXPIRED_XML, amz_date, drop, link_dies_at

if TYPE_CHECKING:
    from runner.simulator.server import Simulator


class VideoHost:
    """The videos of one simulator's tasks, and their signed links."""

    def __init__(self, sim: Simulator):
        self.sim = sim
        self.url = ""  # set once its listener is up
        self._secret = uuid.uuid4().bytes
        self._images: dict[str, bytes] = {}  # first frames by digest, for the videos
        self._videos: dict[tuple[str | None, float, int], bytes] = {}  # image, seconds, width

    async def serve(self, request: web.Request) -> web.StreamResponse:
        self.sim.stats.media_requests += 1
        if "Authorization" in request.headers:
            self.sim.stats.media_with_auth_header += 1
        fault = self.sim.next_fault("media")
        if fault == "drop":
            return await drop(request)
        if fault == "500":
            return web.Response(status=500, text="InternalError", content_type="text/plain")
        task_id = request.match_info["name"].removesuffix(".mp4")
        issued = request.query.get("X-Amz-Date", "")
        ttl = request.query.get("X-Amz-Expires", "")
        signature = request.query.get("X-Amz-Signature", "")
        valid = task_id in self.sim.tasks and hmac.compare_digest(
            signature, self._sign(task_id, issued, ttl)
        )
        if fault == "403" or not valid or self.sim.wall_now() > link_dies_at(issued, ttl):
            self.sim.stats.media_expired += 1
            return web.Response(
                status=403,
                text=EXPIRED_XML,
                content_type="application/xml",
            )
        task = self.sim.tasks[task_id]
        task.downloads += 1
        video = await self._video_of(task)
        rate = self.sim.config.cut_first_download_rate  # drawn only when set: seeds stay
        cut = fault == "cut" or (task.downloads == 1 and rate > 0 and self.sim.rng.random() < rate)
        if cut:
            self.sim.stats.videos_cut += 1
        kind = "image/gif" if self.sim.config.video_type == "gif" else "video/mp4"
        return web.Response(body=cut_short(video) if cut else video, content_type=kind)

    async def _video_of(self, task: SimTask) -> bytes:
        """The task's video, as long as it asked (or ``video_duration_s``): made from its
        first frame once per image and duration, off the loop; or the fixed sample,
        padded to ``video_bytes`` (a real one is 5 to 20 MB)."""
        asked = float(str(task.request.get("duration", 5)))
        duration = self.sim.config.video_duration_s or asked
        if self.sim.config.video_type == "gif":
            image = self._images.get(task.image_digest or "")
            return await asyncio.to_thread(gif_from_image, image, duration)
        if self._sample_only:
            return sample_video(duration, self.sim.config.video_bytes or 0)
        width = self.sim.config.video_width
        key = (task.image_digest, duration, width)
        if key not in self._videos:
            image = self._images.get(task.image_digest or "")
            self._videos[key] = await asyncio.to_thread(video_from_image, image, duration, width)
        return self._videos[key]

    @property
    def _sample_only(self) -> bool:
        return self.sim.config.video_source == "sample" or bool(self.sim.config.video_bytes)

    def sent_image(self, task_id: str) -> bytes | None:
        """The first frame a task was sent, as the API got it (None for a URL, text to
        video, or the sample-only mode): tests assert what went over the wire."""
        task = self.sim.tasks.get(task_id)
        return self._images.get(task.image_digest or "") if task is not None else None

    def keep_image(self, image: object) -> str | None:
        """Keep a base64 first frame (once per distinct image) for its task's video."""
        if (
            self._sample_only
            or not isinstance(image, str)
            or image[:8].lower().startswith(("http://", "https://"))
        ):
            return None
        digest = hashlib.sha1(image.encode("ascii", "replace")).hexdigest()
        if digest not in self._images:
            try:
                self._images[digest] = base64.b64decode(image, validate=False)
            except ValueError:
                return None
        return digest

    def entry(self, task: SimTask) -> dict[str, Any]:
        """The task's video as Task Result lists it: a link signed now (SigV4's
        ``X-Amz-Date`` and ``X-Amz-Expires``), or with ``sign_links_once`` the link signed
        when the task was first seen done, until it dies and after."""
        if task.link_signed_at is None or not self.sim.config.sign_links_once:
            task.link_signed_at = self.sim.wall_now()
        issued = amz_date(task.link_signed_at)
        ttl = f"{self.sim.config.url_ttl_s:g}"
        signature = self._sign(task.task_id, issued, ttl)
        url = (
            f"{self.url}/videos/{task.task_id}.mp4"
            f"?X-Amz-Date={issued}&X-Amz-Expires={ttl}&X-Amz-Signature={signature}"
        )
        return {
            "video_url": url,
            "video_url_ttl": str(int(self.sim.config.url_ttl_s)),
            "video_type": self.sim.config.video_type,
        }

    def _sign(self, task_id: str, issued: str, ttl: str) -> str:
        return hmac.new(self._secret, f"{task_id}|{issued}|{ttl}".encode(), "sha256").hexdigest()
