"""What the simulated API knows: how it behaves (``SimConfig``), what it saw
(``SimStats``, for tests to assert on), and the tasks it holds (``SimTask``)."""

from __future__ import annotations

import math
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any

from runner.simulator.readings import Readings

SUBMIT_FAULTS = (
    "ok",  # no fault: answers as it would (a script's place holder)
    "429",
    "500",
    "503",
    "502_html",  # the task is created, then a gateway answers HTML
    "500_after_create",  # the task is created, then a 500 (after_create_500_reason)
    "drop_after_create",
    "hang_after_create",  # never answers (until the simulator stops)
    "hold_after_create",  # answers normally once release_answers() is called
    "replay_answer",  # nothing created; answers the last task id given (a cached reply)
)
POLL_FAULTS = ("429", "500", "503", "502_html", "drop", "404")
MEDIA_FAULTS = ("403", "500", "drop", "cut")  # cut: the first half, closed cleanly
# moderated: fails for its content; canceled: ends as TASK_STATUS_CANCELED (undocumented)
FATES = ("succeed", "fail", "stall", "moderated", "canceled")


@dataclass
class SimConfig:
    """How the simulated API behaves. Times are seconds; rates are probabilities."""

    api_key: str = "sim-key"
    queue_s: float = 0.3
    generation_s: float = 1.5
    jitter: float = 0.25  # each time varies by up to this fraction either way
    time_sigma: float | None = None  # instead of jitter: log-normal times (median as given)
    url_ttl_s: float = 3600.0
    # How this API reads what the pages leave open (runner.simulator.readings).
    readings: Readings = field(default_factory=Readings)
    # Task Result lists the link it signed when the task was first seen done, on every
    # poll after, until it dies and after (the reading where links are never signed anew).
    sign_links_once: bool = False
    report_eta: bool = True
    fail_rate: float = 0.0
    stall_rate: float = 0.0
    fail_reason: str = "TASK_FAILED: the model could not generate this video"
    # Content moderation: a prompt holding one of these words (any case) is refused at
    # submit (400 ILLEGAL_PROMPT, nothing created) ...
    refuse_prompt_words: tuple[str, ...] = ()
    # A prompt holding a word here decides its task's fate (one of FATES): "moderated"
    # fails it with a free-text reason as moderation gives it, "fail" with fail_reason.
    prompt_fates: dict[str, str] = field(default_factory=dict)
    moderation_reason: str = "The generated video was flagged by content moderation"
    submit_limit: int | None = None  # accepted submits per window (429 beyond)
    poll_limit: int | None = None  # accepted task-result calls per window
    limit_window_s: float = 60.0
    retry_after_s: int = 1  # Retry-After sent with a scripted or random 429
    error_500_rate: float = 0.0  # submit/poll answered 500 with nothing created
    error_503_rate: float = 0.0
    drop_after_create_rate: float = 0.0  # submit: task created, then the connection dropped
    auth_failure_status: int = 403
    balance_usd: float | None = None  # None: unlimited (the balance endpoints say $10,000)
    credit_usd: float = 0.0  # a credit line: spent once the cash is gone
    # The balance endpoints answer: "ok", "missing" (404), "denied" (403
    # API_NOT_ALLOWED) or "garbage" (200 with HTML).
    account_answer: str = "ok"
    # Task Result lags behind: each task's first N polls answer 404 TASK_NOT_FOUND ...
    result_lag_polls: int = 0
    # ... or every poll in its first N seconds (simulator clock): minutes, on a bad day.
    result_lag_s: float = 0.0
    # A submit that made and billed its task, then answered 500 with this reason.
    after_create_500_reason: str = "BILLING_FAILED"
    error_500_after_create_rate: float = 0.0
    video_bytes: int | None = None  # serve videos of this size (None: the small sample)
    video_duration_s: float | None = None  # serve videos this long, whatever was asked
    # "image": each task's video is made from the image it was sent; "sample": the tiny
    # fixed sample for every task (speed benchmarks; also whenever video_bytes is set).
    video_source: str = "image"
    # The width of a video made from an image (its height follows the image): the
    # default is small and quick; a chain needs 600 or more (its links send their
    # parents' last frames, and a first frame is at least 300 px on a side).
    video_width: int = 320
    cut_first_download_rate: float = 0.0  # a task's first download arrives cut in half
    video_type: str = "mp4"  # what Task Result says it made: "gif" serves animated GIFs
    quote_key_in_errors: bool = False  # errors echo the request's Authorization header
    date_skew_s: float = 0.0  # its Date header runs this far ahead of the real clock
    rate_limit_headers: bool = False  # X-RateLimit-* on every answer (with submit_limit)
    # Task Result answers 503 from START to END seconds after the simulator started.
    poll_outage_s: tuple[float, float] | None = None
    seed: int = 0


@dataclass
class SimStats:
    submits: int = 0
    tasks_created: int = 0
    created_by_prompt: Counter[str] = field(default_factory=Counter)
    created_by_model: Counter[str] = field(default_factory=Counter)
    polls: int = 0
    videos_cut: int = 0  # downloads served cut short (the "cut" fault, or its rate)
    polls_by_task: Counter[str] = field(default_factory=Counter)
    rate_limited: Counter[str] = field(default_factory=Counter)  # endpoint -> 429s sent
    faults: Counter[str] = field(default_factory=Counter)  # "endpoint:fault" -> count
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> count
    account_requests: int = 0
    media_requests: int = 0
    media_with_auth_header: int = 0
    media_expired: int = 0

    def as_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: (dict(v) if isinstance(v, Counter) else v) for k, v in values.items()}


@dataclass
class SimTask:
    task_id: str
    prompt: str
    request: dict[str, Any]
    created_at: float  # simulator clock
    created_wall: float
    queue_s: float
    generation_s: float
    fate: str
    model: str = ""  # the path it was created at
    finished_seen_at: float | None = None  # first time a poll could see it finished
    image_digest: str | None = None  # the first frame it was sent (its video is made of it)
    downloads: int = 0  # how often its video was served
    link_signed_at: float | None = None  # wall clock of the link Task Result lists
    reason: str | None = None  # why it fails, when not the config's fail_reason

    @property
    def done_at(self) -> float:
        return self.created_at + self.queue_s + self.generation_s

    def state_at(self, now: float, held: bool, config: SimConfig) -> tuple[str, int, float, str]:
        """What Task Result says of the task at ``now`` (simulator clock): its status,
        progress, eta and reason. A held simulator keeps every task queued, no eta."""
        started = self.created_at + self.queue_s
        if held:
            return "TASK_STATUS_QUEUED", 0, 0.0, ""
        if now >= self.done_at and self.fate != "stall":
            if self.finished_seen_at is None:
                self.finished_seen_at = now
            status, reason = {
                "fail": ("TASK_STATUS_FAILED", self.reason or config.fail_reason),
                "moderated": ("TASK_STATUS_FAILED", config.moderation_reason),
                "canceled": ("TASK_STATUS_CANCELED", "canceled by the provider"),
            }.get(self.fate, ("TASK_STATUS_SUCCEED", ""))
            return status, 100, 0.0, reason
        if now >= started:
            if self.fate == "stall":
                return "TASK_STATUS_PROCESSING", 99, 0.0, ""
            progress = int(100 * (now - started) / max(self.generation_s, 1e-9))
            return "TASK_STATUS_PROCESSING", progress, max(0.0, self.done_at - now), ""
        return "TASK_STATUS_QUEUED", 0, max(0.0, self.done_at - now), ""

    @classmethod
    def new(
        cls,
        body: dict[str, Any],
        config: SimConfig,
        rng: random.Random,
        fate: str,
        now: float,
        model: str = "",
        id_salt: int = 0,
    ) -> SimTask:
        """A task just created from a submit ``body``: its times drawn from ``rng`` (one
        seed decides a whole night), 10 s clips taking twice as long; its id from ``rng``
        too, mixed with ``id_salt`` (one per simulator: a restarted simulator with the
        same seed must not hand out an id it gave before, as the API never would)."""

        def vary(seconds: float) -> float:
            if config.time_sigma is not None and seconds > 0:
                return rng.lognormvariate(math.log(seconds), config.time_sigma)
            return max(0.0, seconds * (1 + rng.uniform(-config.jitter, config.jitter)))

        long_clip = 2.0 if int(body.get("duration") or 5) >= 10 else 1.0
        return cls(
            task_id=str(uuid.UUID(int=rng.getrandbits(128) ^ id_salt, version=4)),
            prompt=body["prompt"],
            request={k: v for k, v in body.items() if k != "image"},
            created_at=now,
            created_wall=time.time(),
            queue_s=vary(config.queue_s),
            generation_s=vary(config.generation_s * long_clip),
            fate=fate,
            model=model,
        )
