"""``kling-batch review DIR``: serve the review page until Ctrl-C, saying where it is."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import webbrowser

from runner.core.exits import EXIT_OK
from runner.review.app import start_review


def cmd_review(args: argparse.Namespace) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return EXIT_OK


async def _serve(args: argparse.Namespace) -> None:
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
        await asyncio.Event().wait()  # until Ctrl-C
    finally:
        await server.close()
