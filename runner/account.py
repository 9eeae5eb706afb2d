"""The account before spending: one free request that checks the key and the base URL,
and the balance to show beside the estimate.

Novita documents ``GET /openapi/v1/billing/balance/detail`` (strings in units of 0.0001
USD) and ``GET /v3/user`` (``credit_balance``, the same unit). Neither is documented as
open to every key, so only an answer that says *the key* is wrong (401, or
``INVALID_API_KEY``/``MISSING_API_KEY``) stops a batch; a missing, denied or odd
endpoint is a warning: the balance check must never block a batch the API would take.
Nothing answering at all is :class:`ApiUnreachable` after a few seconds of retries, so a
wrong ``NOVITA_BASE_URL`` is said at once instead of after a night of backoff.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from runner.client import NovitaClient
from runner.errors import ApiError, ApiUnreachable, AuthError, TransportError
from runner.ledger import Ledger

BALANCE_PATH = "/openapi/v1/billing/balance/detail"
USER_PATH = "/v3/user"
USD_PER_UNIT = 0.0001
KEY_REFUSED = frozenset({"INVALID_API_KEY", "MISSING_API_KEY"})
# Waits between tries when nothing answers: about 7 s in all, then the run stops.
RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0)


@dataclass(frozen=True)
class Balance:
    usd: float
    at: float  # wall clock
    source: str  # the endpoint that said so

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | None) -> Balance | None:
        if not text:
            return None
        try:
            return cls(**json.loads(text))
        except (ValueError, TypeError):
            return None


@dataclass(frozen=True)
class AccountCheck:
    balance: Balance | None
    warning: str | None = None  # why there is no balance, said once


async def check_account(
    client: NovitaClient, retry_delays_s: Sequence[float] = RETRY_DELAYS_S
) -> AccountCheck:
    """The key works and something answers at the base URL, or a typed error:
    :class:`AuthError` (exit 3, before any submit) or :class:`ApiUnreachable`."""
    for tries, delay in enumerate((*retry_delays_s, None), start=1):
        try:
            return await _read_balance(client)
        except TransportError as exc:
            if delay is None:
                raise ApiUnreachable(
                    f"nothing answers at {client.base_url} ({tries} tries over "
                    f"{sum(retry_delays_s):.0f}s; last: {exc})"
                ) from None
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # the loop returns or raises


async def _read_balance(client: NovitaClient) -> AccountCheck:
    problems = []
    for path, read in ((BALANCE_PATH, _available_units), (USER_PATH, _credit_units)):
        try:
            data = await client.account(path)
        except ApiError as exc:
            if isinstance(exc, AuthError) and (exc.status == 401 or exc.reason in KEY_REFUSED):
                raise
            problems.append(f"{path}: {exc}")
            continue
        units = read(data)
        if units is None:
            problems.append(f"{path}: no balance in the answer")
            continue
        return AccountCheck(Balance(round(units * USD_PER_UNIT, 4), time.time(), path))
    return AccountCheck(None, "the balance could not be read (" + "; ".join(problems) + ")")


def _available_units(data: dict[str, Any]) -> float | None:
    return _number(data.get("availableBalance"))


def _credit_units(data: dict[str, Any]) -> float | None:
    user = data.get("user")
    return _number((user if isinstance(user, dict) else data).get("credit_balance"))


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def tasks_covered(costs_usd: Sequence[float], balance_usd: float) -> int:
    """How many of these tasks, in order, the balance pays for."""
    covered, total = 0, 0.0
    for cost in costs_usd:
        total += cost
        if total > balance_usd + 1e-9:
            break
        covered += 1
    return covered


def record_balance(ledger: Ledger, balance: Balance | None) -> None:
    """Keep the first balance a run folder saw and the latest: their difference is the
    measured spend (an upper bound when anything else uses the account meanwhile)."""
    if balance is None:
        return
    values = {"balance_last": balance.to_json()}
    if "balance_first" not in ledger.meta():
        values["balance_first"] = balance.to_json()
    ledger.set_meta(**values)
