"""The simulated API's wire: its paths, the shapes of its error answers, and what it
accepts in a submit body, written from the API's documentation (shared/novita-api.md)
and the job's own limits. Not imported from the client: the simulator is the client's
independent counterpart, so a wrong path or shape on either side shows up in tests.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import calendar
import hashlib
import time
from typing import Any

from aiohttp import web

from jobs.contract import Field, Model, Request, Wire
from jobs.images import check_image_bytes, check_image_url, is_url
from jobs.problems import FieldProblem
from runner.simulator.state import SimTask

TASK_RESULT_PATH = "/v3/async/task-result"
BALANCE_PATH = "/openapi/v1/billing/balance/detail"
USER_PATH = "/v3/user"
USD_PER_UNIT = 0.0001
UNLIMITED_USD = 10_000.0  # what the balance endpoints say when no balance is set

EXPIRED_XML = "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"


AMZ_DATE = "%Y%m%dT%H%M%SZ"  # SigV4's X-Amz-Date: UTC, to the second


def amz_date(wall_s: float) -> str:
    return time.strftime(AMZ_DATE, time.gmtime(wall_s))


def link_dies_at(amz: str, expires: str) -> float:
    """When a link signed at ``amz`` for ``expires`` seconds dies (epoch s); a link
    whose parts do not read dies at once."""
    try:
        return calendar.timegm(time.strptime(amz, AMZ_DATE)) + float(expires)
    except ValueError:
        return 0.0


async def drop(request: web.Request) -> web.StreamResponse:
    """Close the connection without an answer, as a crashed gateway would."""
    if request.transport is not None:
        request.transport.abort()
    raise asyncio.CancelledError  # aiohttp ends the handler quietly on a gone peer


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


def check_body(model: Model, body: Any) -> tuple[Request | None, FieldProblem | None]:
    """Apply the model's own contract to a submitted body, as the real API would: its
    wire names and types (``"5"`` where the model wants a string), its values, its
    rules across fields, and every image. Returns the request (for its price) or the
    first problem."""
    if not isinstance(body, dict):
        return None, FieldProblem("body", body, "must be a JSON object")
    by_wire = {spec.sent_as: spec for spec in model.fields}
    values: dict[str, Any] = {}
    for wire_name, raw in body.items():
        spec = by_wire.get(wire_name)
        if spec is None:
            return None, FieldProblem(wire_name, raw, f"is not a field of {model.name}")
        if not _WIRE_TYPES[spec.wire](raw):
            return None, FieldProblem(wire_name, raw, f"must be sent as {spec.wire.value}")
        values[spec.name] = _from_wire(spec, raw)
    typed, problems = model.check(values)
    if problems:
        return None, problems[0]
    for name in model.image_fields:
        if typed.get(name):
            problem = _image_problem(name, typed[name])
            if problem is not None:
                return None, problem
    return model.request(typed), None


def _image_problem(name: str, image: str) -> FieldProblem | None:
    if is_url(image):
        problems = check_image_url(image)
        return problems[0] if problems else None
    if image.startswith("data:"):
        return FieldProblem(
            name, image[:30], "raw base64 without a data: prefix", "INVALID_IMAGE_FORMAT"
        )
    try:
        data = base64.b64decode(image, validate=True)
    except (binascii.Error, ValueError):
        return FieldProblem(name, None, "is neither a URL nor base64", "INVALID_IMAGE_FORMAT")
    problems = _image_problems(hashlib.sha256(data).digest(), data)
    return problems[0] if problems else None


def _is_int(raw: Any) -> bool:
    return isinstance(raw, int) and not isinstance(raw, bool)


_WIRE_TYPES: dict[Wire, Any] = {
    Wire.TEXT: lambda raw: isinstance(raw, str),
    Wire.CHOICE: lambda raw: isinstance(raw, str),
    Wire.INT: _is_int,
    Wire.INT_AS_TEXT: lambda raw: isinstance(raw, str) and raw.isdigit(),
    Wire.NUMBER: lambda raw: _is_int(raw) or isinstance(raw, float),
    Wire.BOOL: lambda raw: isinstance(raw, bool),
    Wire.IMAGE: lambda raw: isinstance(raw, str),
    Wire.VOICES: lambda raw: (
        isinstance(raw, list)
        and all(isinstance(v, dict) and isinstance(v.get("voice_id"), str) for v in raw)
    ),
    Wire.SEGMENTS: lambda raw: isinstance(raw, list) and all(isinstance(v, dict) for v in raw),
}


def _from_wire(spec: Field, raw: Any) -> Any:
    """A wire value as a manifest would give it, for the model's own checks."""
    if spec.wire == Wire.VOICES:
        return [v["voice_id"] for v in raw]
    return raw


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


def account_answer(endpoint: str, cash_usd: float, credit_usd: float) -> web.Response:
    """``balance``: the balance detail, strings in 0.0001 USD, what can be spent being
    the cash plus the credit line (as in the docs' own example); ``user``: ``/v3/user``,
    whose ``credit_balance`` is a number in the same unit (the available figure)."""
    available = round((cash_usd + credit_usd) / USD_PER_UNIT)
    if endpoint == "user":
        return web.json_response({"credit_balance": available})
    return web.json_response(
        {
            "availableBalance": str(available),
            "cashBalance": str(round(max(cash_usd, 0.0) / USD_PER_UNIT)),
            "creditLimit": str(round(credit_usd / USD_PER_UNIT)),
            "pendingCharges": "0",
            "outstandingInvoices": str(round(max(-cash_usd, 0.0) / USD_PER_UNIT)),
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
        _checked_images[digest] = check_image_bytes(data)[1]
    return _checked_images[digest]
