"""The simulated API's wire: its paths, the shapes of its error answers, and what it
accepts in a submit body, written from the API's documentation (shared/novita-api.md)
and the job's own limits. Not imported from the client: the simulator is the client's
independent counterpart, so a wrong path or shape on either side shows up in tests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from aiohttp import web

from jobs import kling_i2v
from jobs.problems import FieldProblem
from runner.sim_state import SimTask

TASK_RESULT_PATH = "/v3/async/task-result"
BALANCE_PATH = "/openapi/v1/billing/balance/detail"
USER_PATH = "/v3/user"
USD_PER_UNIT = 0.0001
UNLIMITED_USD = 10_000.0  # what the balance endpoints say when no balance is set

EXPIRED_XML = "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"


def bad_gateway() -> web.Response:
    """What a gateway in front of the API answers: HTML, not the API's JSON."""
    return web.Response(
        status=502,
        text="<html><body><h1>502 Bad Gateway</h1></body></html>",
        content_type="text/html",
    )


def error_answer(status: int, reason: str, message: str) -> web.Response:
    return web.json_response(
        {"code": status, "reason": reason, "message": message, "metadata": {}}, status=status
    )


def check_body(body: Any) -> FieldProblem | None:
    """Apply the job's own limits to a submitted body, as the real API would."""
    if not isinstance(body, dict):
        return FieldProblem("body", body, "must be a JSON object")
    if "duration" in body and (
        isinstance(body["duration"], bool) or not isinstance(body["duration"], int)
    ):
        return FieldProblem("duration", body["duration"], "must be an integer")
    voices = body.get("voice_list", [])
    if not isinstance(voices, list) or not all(
        isinstance(v, dict) and isinstance(v.get("voice_id"), str) for v in voices
    ):
        return FieldProblem("voice_list", voices, 'items must be {"voice_id": "<id>"}')
    values = {**body, "voice_list": [v["voice_id"] for v in voices]}
    image = values.pop("image", None)
    _, problems = kling_i2v.check_fields({**values, "image": image})
    if problems:
        return problems[0]
    if kling_i2v.is_url(image):
        problems = kling_i2v.check_image_url(image)
        return problems[0] if problems else None
    if image.startswith("data:"):
        return FieldProblem(
            "image", image[:30], "raw base64 without a data: prefix", "INVALID_IMAGE_FORMAT"
        )
    try:
        data = base64.b64decode(image, validate=True)
    except (binascii.Error, ValueError):
        return FieldProblem("image", None, "is neither a URL nor base64", "INVALID_IMAGE_FORMAT")
    problems = _image_problems(hashlib.sha256(data).digest(), data)
    return problems[0] if problems else None


def request_for_price(body: dict[str, Any]) -> kling_i2v.Request:
    return kling_i2v.Request(
        image="",
        prompt=body["prompt"],
        duration=body.get("duration", kling_i2v.API_DEFAULTS["duration"]),
        sound=body.get("sound", kling_i2v.API_DEFAULTS["sound"]),
        voice_list=tuple(v["voice_id"] for v in body.get("voice_list", [])),
    )


def task_result_answer(
    task: SimTask,
    status: str,
    reason: str,
    eta_s: int,
    progress_percent: int,
    videos: list[dict[str, Any]],
) -> dict[str, Any]:
    """A Task Result answer in exactly the documented shape (the official SDK parses
    it strictly: ``extra.seed`` and all three ``*_time_ms`` as strings)."""
    wall_ms = int(task.created_wall * 1000)
    finished = status in ("TASK_STATUS_SUCCEED", "TASK_STATUS_FAILED")
    complete_ms = wall_ms + int((task.queue_s + task.generation_s) * 1000) if finished else 0
    return {
        "extra": {
            "seed": str(int(hashlib.sha256(task.task_id.encode()).hexdigest()[:8], 16)),
            "debug_info": {
                "request_info": "",
                "submit_time_ms": str(wall_ms),
                "execute_time_ms": str(wall_ms + int(task.queue_s * 1000)),
                "complete_time_ms": str(complete_ms),
            },
        },
        "task": {
            "task_id": task.task_id,
            "status": status,
            "reason": reason,
            "task_type": "KLING_V2_6_PRO_I2V",
            "eta": eta_s,
            "progress_percent": progress_percent,
        },
        "images": [],
        "videos": videos,
        "audios": [],
    }


def account_answer(endpoint: str, units: int) -> web.Response:
    """``balance``: the balance detail, strings in 0.0001 USD; ``user``: ``/v3/user``,
    whose ``credit_balance`` is a number in the same unit."""
    if endpoint == "user":
        return web.json_response({"credit_balance": units})
    return web.json_response(
        {
            "availableBalance": str(units),
            "cashBalance": str(units),
            "creditLimit": "0",
            "pendingCharges": "0",
            "outstandingInvoices": "0",
        }
    )


def account_fault(kind: str) -> web.Response | None:
    """How the account endpoints fail when told to: ``missing`` (404), ``denied`` (403,
    not the key's fault), ``garbage`` (a 200 that is not JSON); ``ok`` is no fault."""
    if kind == "missing":
        return error_answer(404, "NOT_FOUND", "not found")
    if kind == "denied":
        return error_answer(403, "API_NOT_ALLOWED", "this key may not use this API")
    if kind == "garbage":
        return web.Response(text="<html>maintenance</html>", content_type="text/html")
    return None


_checked_images: dict[bytes, list[FieldProblem]] = {}


def _image_problems(digest: bytes, data: bytes) -> list[FieldProblem]:
    """The job's image checks (which decode the whole image), once per distinct image:
    a batch sends a few images many times, and decoding each at 400 submits a second
    would make the simulator, not the runner, the bottleneck of a benchmark."""
    if digest not in _checked_images:
        if len(_checked_images) >= 64:
            _checked_images.clear()
        _checked_images[digest] = kling_i2v.check_image_bytes(data)[1]
    return _checked_images[digest]
