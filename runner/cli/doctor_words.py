"""``kling-batch doctor [--spend]``: the command line's words for ``runner.run.doctor``.

Exit codes: 0 when every check is fine (notes are fine), 3 when one is not (the key
refused, nothing answering, a clock far off); with ``--spend``, 1 when the task did
not succeed, 2 when the person declined.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sys
from collections.abc import Iterator

from jobs import DEFAULT_MODEL, MODELS
from jobs.forms import DESCRIBED
from runner.api.account import check_account
from runner.api.client import NovitaClient
from runner.api.credentials import api_key_of, base_url_of
from runner.api.learned import Learned
from runner.cli.status_words import say
from runner.core.errors import KlingBatchError
from runner.core.exits import EXIT_OK, EXIT_SOME_FAILED, EXIT_STOPPED, EXIT_USAGE
from runner.core.logs import setup_logging
from runner.run.doctor import Check, Settled, cheapest_request, free_checks, spend_one
from runner.run.rehearsal import REHEARSAL_BALANCE_USD, SIMULATOR_API
from runner.simulator import SimConfig, simulator_in_thread

_MARKS = {True: "ok  ", False: "FAIL", None: "note"}


def add_doctor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--spend",
        action="store_true",
        help="also run the cheapest real task (5 s, no sound; its price is shown first) "
        "and record what it settles: the picture's wire form, the price, link signing",
    )
    parser.add_argument("--model", choices=sorted(MODELS), default=DEFAULT_MODEL)
    parser.add_argument("--yes", action="store_true", help="spend without asking")
    parser.add_argument("--simulate", action="store_true", help="ask an embedded simulator")


def cmd_doctor(args: argparse.Namespace) -> int:
    with _api(args.simulate) as (api, url, key):
        setup_logging(None, secrets=[key])
        learned = Learned.open(api, use_cache=api != SIMULATOR_API)
        say(f"{api}:")
        checks = asyncio.run(_checks(url, key, learned))
        for check in checks:
            say(f"  {_MARKS[check.ok]}  {check.name}: {check.said}")
        failed = any(check.ok is False for check in checks)
        if not args.spend:
            return EXIT_STOPPED if failed else EXIT_OK
        if failed:
            print("not spending: a check above failed", file=sys.stderr)
            return EXIT_STOPPED
        model = MODELS[args.model]
        request = cheapest_request(model)
        say(
            f"doctor --spend sends one real task of {model.name}: {request.duration} s, "
            f"no sound, a drawn test card; estimated ${request.estimate():.2f} (an estimate: "
            "the balance before and after measures it)"
        )
        if not _yes(args.yes):
            print("declined: nothing was sent", file=sys.stderr)
            return EXIT_USAGE
        settled = asyncio.run(_spend(url, key, learned, model.name))
        _said(settled)
        return EXIT_OK if settled.outcome == "succeeded" else EXIT_SOME_FAILED


@contextlib.contextmanager
def _api(simulate: bool) -> Iterator[tuple[str, str, str]]:
    """(what the API is called, its base URL, the key): the environment's, or an
    embedded simulator's."""
    if simulate:
        key = secrets.token_urlsafe(16)
        config = SimConfig(api_key=key, balance_usd=REHEARSAL_BALANCE_USD)
        with simulator_in_thread(config) as sim:
            yield SIMULATOR_API, sim.base_url, key
        return
    url, key = base_url_of(), api_key_of(hint="doctor --simulate")
    yield url, url, key


async def _checks(url: str, key: str, learned: Learned) -> list[Check]:
    async with NovitaClient(url, key) as client:
        return await free_checks(client, learned)


async def _spend(url: str, key: str, learned: Learned, model: str) -> Settled:
    async with NovitaClient(url, key) as client:
        try:
            before = (await check_account(client, retry_delays_s=())).balance
        except KlingBatchError:
            before = None
        return await spend_one(client, learned, MODELS[model], before)


def _yes(assume_yes: bool) -> bool:
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        print("refusing to spend without --yes when there is no terminal to ask", file=sys.stderr)
        return False
    try:
        return input("send it? [y/N] ").strip().lower() in ("y", "yes")
    except (EOFError, KeyboardInterrupt):
        return False


def _said(settled: Settled) -> None:
    task = f" (task {settled.task_id})" if settled.task_id else ""
    say(f"  outcome: {settled.outcome}{task}")
    for refusal in settled.refusals:
        say(f"  refused first: {refusal}")
    if settled.image_form:
        say(f"  the picture went as {DESCRIBED.get(settled.image_form, settled.image_form)}")
    if settled.price_usd is not None:
        say(f"  measured price: ${settled.price_usd:.2f} (estimate ${settled.estimate_usd:.2f})")
    elif settled.outcome == "succeeded":
        say("  measured price: the balance did not move yet (it can lag a charge)")
    if settled.generation_s is not None:
        say(f"  generation time: {settled.generation_s:.0f} s")
    if settled.links:
        say(f"  Task Result, asked again: {settled.links}")
    if settled.video:
        say(f"  the video: {settled.video}")
    for note in settled.notes:
        say(f"  note: {note}")
    say("  kept for the next runs of this API (doctor lists what is learned)")
