"""One spelling per API, so that a run folder's binding and what was learned of an API
do not depend on how a base URL was typed."""

from __future__ import annotations

from urllib.parse import urlsplit

_LOOPBACK = {"localhost": "127.0.0.1", "[::1]": "127.0.0.1", "::1": "127.0.0.1"}
_DEFAULT_PORTS = {"http": 80, "https": 443}


def api_identity(api: str) -> str:
    """One spelling per API: scheme and host in lower case, ``localhost`` as
    ``127.0.0.1``, no default port, no trailing ``/``. ``HTTP://LOCALHOST:8765/`` and
    ``http://127.0.0.1:8765`` are one API (for a run folder's binding, telling the user
    to use ``--out`` for it would pay for every task again)."""
    parts = urlsplit(api.strip())
    if not parts.scheme or not parts.hostname:
        return api.strip()
    scheme = parts.scheme.lower()
    host = _LOOPBACK.get(parts.hostname.lower(), parts.hostname.lower())
    try:
        port = parts.port
    except ValueError:
        return api.strip()
    netloc = host if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"
