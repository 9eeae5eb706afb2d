"""``kling-batch doctor``: what can be known of the API for free, and, when asked, what
one announced task settles.

The free checks never create anything: the key and the balance (the balance detail),
the base URL and its TLS, our clock against the API's ``Date`` (link expiries and
deadlines are read on our clock), Task Result (a made-up task id must answer 404), any
rate-limit headers the API sends (none are documented), and what kling-batch has
learned of the API's wire forms.

``doctor --spend`` runs the cheapest real task of a model (5 s, no sound) with a
picture drawn here, and records what it settles (``runner.api.learned``): the picture's
wire form (trying the next on a refusal that names it, free), whether Task Result
signs a video link anew when asked again, the price measured from the balance before
and after, and the generation time.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import io
import secrets
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image, ImageDraw

from jobs.contract import Model, Request
from runner.api.account import BALANCE_PATH, Balance, balance_of_detail
from runner.api.answers import FAILED, SUCCEED, Probe, TaskResult
from runner.api.client import TASK_RESULT_PATH, NovitaClient
from runner.api.learned import LINKS, SAME_LINK, SIGNS_ANEW, Learned
from runner.api.links import signs_anew
from runner.api.wire_forms import WireForms, fields_with_forms, names_the_picture
from runner.core.errors import ApiError, KlingBatchError, RateLimited, TransportError
from runner.engine.fetch import download

CLOCK_SKEW_S = 5.0  # more than this between our clock and the API's is said
RELINK_AFTER_S = 2.5  # a second look at a finished task, late enough to show a new signing
POLL_EVERY_S = 5.0
SPEND_TIMEOUT_S = 1800.0
DOCTOR_PROMPT = "A slow push-in on a calm test card (kling-batch doctor)"
_RATE_HEADERS = ("ratelimit", "rate-limit", "retry-after")


@dataclass(frozen=True)
class Check:
    """One free check: what it looked at, whether it is fine (None: a note, neither
    good nor bad), and what it found."""

    name: str
    ok: bool | None
    said: str


async def free_checks(client: NovitaClient, learned: Learned) -> list[Check]:
    """Every free check, in order; a base URL where nothing answers ends them early."""
    checks = [_transport_check(client.base_url)]
    try:
        balance = await client.probe(BALANCE_PATH)
        result = await client.probe(
            f"{TASK_RESULT_PATH}?task_id=kling-batch-doctor-{secrets.token_hex(6)}"
        )
    except TransportError as exc:
        return [*checks, Check("base URL", False, str(exc)), *learned_checks(learned)]
    checks += [
        Check("base URL", True, f"answers in {balance.elapsed_s * 1000:.0f} ms"),
        _key_check(balance),
        _clock_check(balance),
        _task_result_check(result),
        _rate_limit_check((balance, result)),
    ]
    return checks + learned_checks(learned)


def _transport_check(base_url: str) -> Check:
    if base_url.lower().startswith("https://"):
        return Check("TLS", True, "https: the key travels encrypted")
    loopback = any(h in base_url for h in ("//127.0.0.1", "//localhost", "//[::1]"))
    if loopback:
        return Check("TLS", None, "plain http on this machine (a simulator)")
    return Check("TLS", False, "plain http: the key would travel unencrypted; use https://")


def _key_check(answer: Probe) -> Check:
    body = answer.json()
    if answer.status == 200:
        balance = balance_of_detail(body)
        shown = balance.describe() if balance else "no balance in the answer"
        return Check("key", True, f"accepted; balance {shown}")
    reason = str(body.get("reason") or f"HTTP {answer.status}")
    if answer.status == 401 or reason in ("INVALID_API_KEY", "MISSING_API_KEY"):
        return Check("key", False, f"refused ({reason}): check NOVITA_API_KEY")
    return Check(
        "key",
        None,
        f"the balance endpoint answered {answer.status} {reason}: not open to this key; "
        "the key is checked at the first submit instead",
    )


def _clock_check(answer: Probe) -> Check:
    date = answer.headers.get("date")
    if not date:
        return Check("clock", None, "the API sent no Date header")
    try:
        theirs = email.utils.parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        return Check("clock", None, f"unreadable Date header {date!r}")
    skew = time.time() - answer.elapsed_s / 2 - theirs
    if abs(skew) <= CLOCK_SKEW_S:
        return Check("clock", True, f"within {abs(skew):.1f} s of the API's")
    way = "ahead of" if skew > 0 else "behind"
    return Check(
        "clock",
        False,
        f"{abs(skew):.0f} s {way} the API's: link expiries and deadlines are read on this "
        "clock; set it right (NTP)",
    )


def _task_result_check(answer: Probe) -> Check:
    reason = str(answer.json().get("reason") or "")
    if answer.status == 404:
        return Check("Task Result", True, f"answers; a made-up task id is {reason or '404'}")
    if answer.status in (401, 403):
        return Check("Task Result", False, f"refused this key ({answer.status} {reason})")
    return Check("Task Result", None, f"a made-up task id answered {answer.status} {reason}")


def _rate_limit_check(answers: Sequence[Probe]) -> Check:
    found = {
        name: value
        for answer in answers
        for name, value in answer.headers.items()
        if any(mark in name for mark in _RATE_HEADERS)
    }
    if not found:
        return Check("rate limits", None, "no rate-limit headers (none are documented)")
    return Check("rate limits", True, ", ".join(f"{k}: {v}" for k, v in sorted(found.items())))


def learned_checks(learned: Learned) -> list[Check]:
    facts = learned.items()
    if not facts:
        return [Check("learned", None, "nothing yet: the first run's canary settles it")]
    return [
        Check("learned", None, f"{key} = {fact.value} ({fact.proof}, {_day(fact.at)})")
        for key, fact in facts
    ]


def _day(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(at))


# --- one announced task --------------------------------------------------------------


@dataclass
class Settled:
    """What ``doctor --spend`` found; None where it could not tell."""

    model: str
    estimate_usd: float
    outcome: str = "not sent"
    task_id: str | None = None
    image_form: str | None = None
    refusals: list[str] = field(default_factory=list)
    price_usd: float | None = None
    generation_s: float | None = None
    links: str | None = None
    video: Path | None = None
    notes: list[str] = field(default_factory=list)


def cheapest_request(model: Model, picture: str = "doctor-test-card.png") -> Request:
    """The model's cheapest task: its shortest duration, no sound, a drawn picture."""
    values: dict[str, Any] = {"prompt": DOCTOR_PROMPT}
    if model.image_fields:
        values[model.image_fields[0]] = picture
    if model.takes("duration"):
        values["duration"] = min(model.by_name["duration"].choices or (5,))
    if model.takes("sound"):
        values["sound"] = False
    typed, problems = model.check(values)
    if problems:
        raise ValueError(f"{model.name}: {problems[0]}")
    return model.request(typed)


def test_card() -> str:
    """A 1280x720 PNG drawn here (bands and a circle: something to move), as base64."""
    picture = Image.new("RGB", (1280, 720), (30, 60, 110))
    draw = ImageDraw.Draw(picture)
    for band in range(8):
        draw.rectangle((band * 160, 560, band * 160 + 159, 719), fill=(40 + band * 26, 90, 60))
    draw.ellipse((480, 200, 800, 520), fill=(235, 190, 60))
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode("ascii")


async def spend_one(
    client: NovitaClient, learned: Learned, model: Model, balance_before: Balance | None
) -> Settled:
    """Send the model's cheapest task (trying the picture's next form on a refusal
    that names it), follow it to its end, fetch its video, look at its link again, and
    read the balance after. Everything settled is told to ``learned``."""
    request = cheapest_request(model)
    settled = Settled(model.name, request.estimate())
    wire = WireForms(learned)
    used = fields_with_forms(request)
    images = {model.image_fields[0]: test_card()} if model.image_fields else {}
    task_id = await _submit(client, wire, request, images, used, settled)
    if task_id is None:
        return settled
    settled.task_id = task_id
    result = await _follow(client, task_id)
    settled.generation_s = result.generation_s if result else None
    if result is None or result.status != SUCCEED:
        reason = result.reason if result else f"still running after {SPEND_TIMEOUT_S:g} s"
        settled.outcome = f"failed: {reason}" if result else f"unfinished: {reason}"
        if result and names_the_picture(reason) and used:
            wire.picture_failed(model, used[0])
            settled.notes.append("its picture form is condemned: the next run tries the next one")
        return settled
    settled.outcome = "succeeded"
    wire.succeeded(model, used)
    await _second_look(client, task_id, result, learned, settled)
    settled.video = await _fetch(result.video_url)
    if settled.generation_s is not None:
        learned.learn(f"generation_s/{model.name}", f"{settled.generation_s:.0f}", "doctor")
    settled.price_usd = await _measured_price(client, balance_before, request, learned)
    return settled


async def _submit(
    client: NovitaClient,
    wire: WireForms,
    request: Request,
    images: dict[str, str],
    used: list[str],
    settled: Settled,
) -> str | None:
    """The task id, or None with ``settled.outcome`` saying why. Retried only where
    nothing was made; a refusal that names the picture tries its next form (free)."""
    model = request.model
    for tries in range(8):
        settled.image_form = wire.form(model, model.by_name[used[0]]) if used else None
        try:
            return await client.submit(model.path, request.body(images, wire.forms_for(model)))
        except KlingBatchError as exc:
            if exc.retryable:  # 429, 503, CREATE_TASK_FAILED, no connection: nothing made
                await asyncio.sleep(_retry_wait(exc, tries))
                continue
            if not isinstance(exc, ApiError):  # sent, no answer: it may exist
                settled.outcome = f"unknown: {exc} (it may exist and be billed)"
                return None
            settled.refusals.append(str(exc))
            adapted = None if exc.stops_run else wire.after_refusal(model, exc, used)
            if adapted is None or adapted.next is None:
                settled.outcome = f"refused: {exc}"
                return None
    settled.outcome = "not sent: the API kept answering that it could not take it now"
    return None


def _retry_wait(error: KlingBatchError, tries: int) -> float:
    if isinstance(error, RateLimited) and error.retry_after:
        return error.retry_after
    return 2.0 * (tries + 1)


async def _follow(client: NovitaClient, task_id: str) -> TaskResult | None:
    """Poll until the task ends (a 404 is asked again: Task Result may lag)."""
    deadline = time.monotonic() + SPEND_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            result = await client.task_result(task_id)
        except KlingBatchError:
            result = None
        if result is not None and result.status in (SUCCEED, FAILED):
            return result
        wait = result.eta_s if result is not None and result.eta_s else POLL_EVERY_S
        await asyncio.sleep(min(max(wait, 0.05), POLL_EVERY_S))
    return None


async def _second_look(
    client: NovitaClient, task_id: str, first: TaskResult, learned: Learned, settled: Settled
) -> None:
    """Ask Task Result again a little later: a new signing, or the same link?"""
    await asyncio.sleep(RELINK_AFTER_S)
    try:
        again = await client.task_result(task_id)
    except KlingBatchError as exc:
        settled.notes.append(f"a second look at the task failed: {exc}")
        return
    if not (first.video_url and again.video_url):
        return
    anew = signs_anew(first.video_url, again.video_url, again.video_url_ttl_s, time.time())
    if anew is None:
        settled.notes.append("a second look came too soon to tell whether links are signed anew")
        return
    settled.links = SIGNS_ANEW if anew else SAME_LINK
    learned.learn(LINKS, settled.links, "doctor")


async def _fetch(url: str | None) -> Path | None:
    if not url:
        return None
    folder = Path(tempfile.mkdtemp(prefix="kling-batch-doctor-"))
    async with aiohttp.ClientSession() as session:
        saved, _, _ = await download(session, url, folder / "test-card.mp4")
    return saved


async def _measured_price(
    client: NovitaClient, before: Balance | None, request: Request, learned: Learned
) -> float | None:
    if before is None:
        return None
    try:
        after = balance_of_detail((await client.probe(BALANCE_PATH)).json())
    except TransportError:
        return None
    if after is None:
        return None
    spent = round(before.usd - after.usd, 4)
    if spent <= 0:  # unmoved (a balance may lag a charge) or topped up meanwhile
        return None
    seconds = request.duration or 1
    learned.learn(
        f"price/{request.model.name}/{request.tier()}", f"{spent / seconds:.4f}", "doctor"
    )
    return spent
