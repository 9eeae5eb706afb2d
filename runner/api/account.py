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

from runner.api.client import NovitaClient
from runner.core.errors import ApiError, ApiUnreachable, AuthError, TransportError
from runner.ledger.file import Ledger

BALANCE_PATH = "/openapi/v1/billing/balance/detail"
USER_PATH = "/v3/user"
USD_PER_UNIT = 0.0001
KEY_REFUSED = frozenset({"INVALID_API_KEY", "MISSING_API_KEY"})
# Waits between tries when nothing answers: about 7 s in all, then the run stops.
RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0)


@dataclass(frozen=True)
class Balance:
    """The account as the API says it. ``usd`` is what can still be spent
    (``availableBalance``), which in the docs' own example is the cash left *plus* a
    credit line: so wherever it is shown, the cash and the credit are shown apart, and
    "covers N tasks" says whether the credit is counted. ``/v3/user`` gives one figure
    only (then cash and credit are None)."""

    usd: float
    at: float  # wall clock
    source: str  # the endpoint that said so
    cash_usd: float | None = None  # cashBalance: the top-ups left
    credit_usd: float | None = None  # creditLimit: what the account may owe
    owed_usd: float | None = None  # outstandingInvoices: what it owes now

    def describe(self) -> str:
        """``$100.00 available (cash $80.00 + credit $20.00)``, ``$80.00 (cash, no
        credit line)``, or just ``$100.00`` when the API did not say."""
        if self.cash_usd is None or self.credit_usd is None:
            return f"${self.usd:,.2f}"
        if not self.credit_usd and not self.owed_usd:
            return f"${self.usd:,.2f} (cash, no credit line)"
        owed = f"; owed ${self.owed_usd:,.2f}" if self.owed_usd else ""
        return (
            f"${self.usd:,.2f} available (cash ${self.cash_usd:,.2f} + "
            f"credit ${self.credit_usd:,.2f}{owed})"
        )

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
    for path, read in ((BALANCE_PATH, balance_of_detail), (USER_PATH, _user_balance)):
        try:
            data = await client.account(path)
        except ApiError as exc:
            if isinstance(exc, AuthError) and (exc.status == 401 or exc.reason in KEY_REFUSED):
                raise
            problems.append(f"{path}: {exc}")
            continue
        balance = read(data, path)
        if balance is None:
            problems.append(f"{path}: no balance in the answer")
            continue
        return AccountCheck(balance)
    return AccountCheck(None, "the balance could not be read (" + "; ".join(problems) + ")")


def balance_of_detail(data: dict[str, Any], path: str = BALANCE_PATH) -> Balance | None:
    """The balance detail: strings in 0.0001 USD, available = cash + credit."""
    available = _usd(data.get("availableBalance"))
    if available is None:
        return None
    cash, credit = _usd(data.get("cashBalance")), _usd(data.get("creditLimit"))
    return Balance(
        available, time.time(), path, cash, credit, _usd(data.get("outstandingInvoices"))
    )


def _user_balance(data: dict[str, Any], path: str) -> Balance | None:
    user = data.get("user")
    units = _usd((user if isinstance(user, dict) else data).get("credit_balance"))
    return None if units is None else Balance(units, time.time(), path)


def _usd(value: Any) -> float | None:
    units = _number(value)
    return None if units is None else round(units * USD_PER_UNIT, 4)


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
