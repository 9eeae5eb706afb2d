"""``kling-batch review DIR``: serve the review page until Ctrl-C, saying where it is."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import webbrowser

from runner.core.exits import EXIT_OK
from runner.engine.stopping import STOP_SIGNALS
from runner.review.app import start_review


def cmd_review(args: argparse.Namespace) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return EXIT_OK


async def _serve(args: argparse.Namespace) -> None:
    stopped = _stop_on_signals()
    server = await start_review(args.run_dir, port=args.port)
    try:
        print(f"review of {args.run_dir}: {server.url}", flush=True)
        print(
            "  the address holds a key to this page (it can spend): keep it to yourself; "
            "Ctrl-C stops",
            flush=True,
        )
        if args.open:
            webbrowser.open(server.url)
        await stopped.wait()
    finally:
        await server.close()
        for signum in STOP_SIGNALS:
            asyncio.get_running_loop().remove_signal_handler(signum)


def _stop_on_signals() -> asyncio.Event:
    """Set on Ctrl-C, SIGTERM or SIGHUP; installed before the address is printed, so a
    signal sent as soon as it is read is never missed. Handled here, not left to
    Python's KeyboardInterrupt: a process started with SIGINT ignored (a shell's
    background job, ``nohup``, a test runner's worker) would never stop on it."""
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stopped.set)
    return stopped
