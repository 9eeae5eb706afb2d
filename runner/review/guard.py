"""Who may talk to the review server: one pure rule, and the middleware that applies it.

The server can spend money (its redo button), so a web page open in the same browser
must not be able to reach it, even knowing its port:

- only the token it printed opens it (the first part of every path: a page elsewhere
  cannot guess it, and it is compared in constant time);
- the Host must be the address it printed (a DNS-rebinding page names its own host);
- a write must come from the page itself: ``Origin`` is its own address (browsers send
  it on every cross-origin POST), ``Sec-Fetch-Site`` (when sent) is ``same-origin``,
  and the body is JSON (a cross-site form cannot send ``application/json`` without a
  preflight this server never answers).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from aiohttp.typedefs import Middleware

SAFE_METHODS = frozenset({"GET", "HEAD"})


def refusal(
    method: str, path: str, headers: Mapping[str, str], token: str, origin: str
) -> tuple[int, str] | None:
    """Why a request is refused (status, reason), or None when it may go on.
    ``origin`` is the server's own (``http://127.0.0.1:PORT``)."""
    first = path.lstrip("/").split("/", 1)[0]
    if not hmac.compare_digest(first.encode(), token.encode()):
        return 404, "not found"  # says nothing of what is here
    if headers.get("Host", "") != origin.removeprefix("http://"):
        return 403, "the review answers only at the address it printed"
    if method in SAFE_METHODS:
        return None
    if headers.get("Origin") != origin:
        return 403, "a change must come from the review page itself"
    if headers.get("Sec-Fetch-Site", "same-origin") != "same-origin":
        return 403, "a change must come from the review page itself"
    if headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
        return 415, "a change is sent as JSON"
    return None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def guard(token: str, origin: Callable[[], str]) -> Middleware:
    """The middleware: every request meets :func:`refusal` before any handler."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        refused = refusal(request.method, request.path, request.headers, token, origin())
        if refused is not None:
            status, reason = refused
            return web.json_response({"error": reason}, status=status)
        response = await handler(request)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"  # not framed by another page
        response.headers["Referrer-Policy"] = "no-referrer"  # the token stays here
        return response

    return middleware
