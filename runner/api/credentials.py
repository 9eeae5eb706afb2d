"""The key and the base URL from the environment, read once and checked before anything
is made: a key file with Windows line endings, or a base URL carrying a password, is a
one-line message (exit 2), not an internal error halfway through a night."""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from runner.api.client import DEFAULT_BASE_URL
from runner.core.errors import UsageError

KEY_ENV = "NOVITA_API_KEY"
BASE_URL_ENV = "NOVITA_BASE_URL"


def api_key_of(env: Mapping[str, str] = os.environ, hint: str = "run --simulate") -> str:
    """``NOVITA_API_KEY``, without the spaces and line ends a key file leaves around it;
    one that still holds a space or a character no HTTP header takes is refused."""
    key = env.get(KEY_ENV, "").strip()
    if not key:
        raise UsageError(f"set {KEY_ENV} (or use {hint} to rehearse)")
    if not key.isascii() or not key.isprintable() or " " in key:
        raise UsageError(
            f"{KEY_ENV} holds a space, a control character or a non-ASCII character "
            "inside it: an API key is one word of plain characters; check how it was pasted"
        )
    return key


def base_url_of(env: Mapping[str, str] = os.environ) -> str:
    """``NOVITA_BASE_URL`` (default the API's own), an http(s) URL of a host with no
    user name, password, query or fragment: the key goes in its own header, and a
    password in a URL would be written wherever the URL is."""
    url = env.get(BASE_URL_ENV, DEFAULT_BASE_URL).strip()
    parts = urlsplit(url)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if parts.username is not None or parts.password is not None:
        raise UsageError(
            f"{BASE_URL_ENV} holds a user name or password: take them out (the API key "
            f"goes in {KEY_ENV}, sent in its own header)"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise UsageError(f"{BASE_URL_ENV} must be an http(s) URL, e.g. {DEFAULT_BASE_URL}")
    if parts.query or parts.fragment:
        raise UsageError(f"{BASE_URL_ENV} takes no query or fragment: only the API's address")
    return url.rstrip("/")
