"""Hosting the simulator: ``kling-batch sim`` (a server until Ctrl-C), and a simulator
on a thread of its own for synchronous callers (the official SDK, subprocess tests, the
embedded rehearsal)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Any

from runner.core.rates import Rate
from runner.simulator.readings import IMAGE_READINGS, VOICE_READINGS, Readings
from runner.simulator.server import Simulator
from runner.simulator.state import SimConfig


def _port(text: str) -> int:
    """A TCP port, 0 (any free one) to 65535: argparse says what is wrong, no traceback."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, not {text!r}")
    return port


async def serve_forever(config: SimConfig, host: str, port: int, media_port: int) -> None:
    """``kling-batch sim``: run until cancelled (Ctrl-C)."""
    sim = await Simulator(config).start(host, port, media_port)
    try:
        print(f"simulator: API at {sim.base_url}, videos at {sim.media_url}", flush=True)
        print(
            f"  export NOVITA_BASE_URL={sim.base_url} NOVITA_API_KEY={config.api_key}", flush=True
        )
        print(f"  counts: {sim.base_url}/_sim/stats", flush=True)
        await asyncio.Event().wait()
    finally:
        await sim.stop()


@contextlib.contextmanager
def simulator_in_thread(config: SimConfig | None = None) -> Iterator[Simulator]:
    """A simulator on its own event loop thread, for synchronous callers (the official
    SDK, subprocess tests). Controls are called from the caller's thread; they only
    touch plain attributes and deques, which is safe enough for tests."""
    ready = threading.Event()
    holder: dict[str, Any] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        holder["loop"] = loop
        sim = Simulator(config)
        loop.run_until_complete(sim.start())
        holder["sim"] = sim
        ready.set()
        loop.run_forever()
        loop.run_until_complete(sim.stop())
        loop.close()

    thread = threading.Thread(target=run, name="simulator", daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield holder["sim"]
    finally:
        holder["loop"].call_soon_threadsafe(holder["loop"].stop)
        thread.join(10)


def add_sim_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``sim`` command's options: where it listens, how long tasks take, and the
    fault knobs (see the README)."""
    defaults = SimConfig()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=_port, default=8765)
    parser.add_argument("--media-port", type=_port, default=0, help="video host port (any free)")
    parser.add_argument("--api-key", default=defaults.api_key)
    for name in ("queue_s", "generation_s", "url_ttl_s"):
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name)
        )
    for name in (
        "fail_rate",
        "stall_rate",
        "error_500_rate",
        "error_503_rate",
        "drop_after_create_rate",
        "error_500_after_create_rate",
        "cut_first_download_rate",
    ):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=0.0)
    parser.add_argument(
        "--video-duration-s", type=float, help="serve videos this long, whatever was asked"
    )
    parser.add_argument(
        "--video-source",
        choices=["image", "sample"],
        default=defaults.video_source,
        help="each video made from its task's image, or a tiny fixed sample (speed)",
    )
    parser.add_argument(
        "--video-width",
        type=int,
        default=defaults.video_width,
        help="width of a video made from an image (a chain's links need 600 or more)",
    )
    parser.add_argument(
        "--sign-links-once",
        action="store_true",
        help="Task Result lists the link signed when the task finished, never a new one",
    )
    parser.add_argument("--submit-limit", type=_rate, help="e.g. 20/min (429 beyond)")
    parser.add_argument("--balance-usd", type=float, help="each created task's price is deducted")
    parser.add_argument(
        "--credit-usd", type=float, default=0.0, help="a credit line, spent once the cash is gone"
    )
    parser.add_argument(
        "--poll-outage",
        type=_window,
        metavar="START:END",
        help="Task Result answers 503 from START to END seconds after the start",
    )
    parser.add_argument(
        "--result-lag-polls",
        type=int,
        default=0,
        help="each task's first N polls answer 404 TASK_NOT_FOUND (a lagging Task Result)",
    )
    parser.add_argument(
        "--result-lag-s",
        type=float,
        default=0.0,
        help="every poll of a task in its first N seconds answers 404 TASK_NOT_FOUND",
    )
    parser.add_argument(
        "--refuse-prompt-word",
        action="append",
        default=[],
        metavar="WORD",
        help="a prompt holding WORD is refused at submit: 400 ILLEGAL_PROMPT (repeatable)",
    )
    parser.add_argument(
        "--moderate-prompt-word",
        action="append",
        default=[],
        metavar="WORD",
        help="a prompt holding WORD is created, then fails for its content (repeatable)",
    )
    readings = parser.add_argument_group(
        "readings", "how this API reads what Novita's pages leave open (defaults: ours)"
    )
    readings.add_argument(
        "--image-form",
        choices=IMAGE_READINGS,
        default="raw",
        help="a local first frame as bare base64, a data: URI only, either, or bare "
        "base64 taken and then failed after billing (raw-fails)",
    )
    readings.add_argument("--voice-form", choices=VOICE_READINGS, default="objects")
    readings.add_argument(
        "--multi-prompt-alone", action="store_true", help="multi_prompt with prompt is refused"
    )
    readings.add_argument(
        "--end-image-url-only", action="store_true", help="a local end_image is refused"
    )
    readings.add_argument(
        "--strict-docs",
        action="store_true",
        help="the readings likeliest to differ from ours, at once: " + STRICT_DOCS_SAID,
    )
    parser.add_argument("--seed", type=int, default=0)


# The pages read literally where they are open: a picture that is taken bare and then
# fails for it, "List of voice IDs", "mutually exclusive with prompt", "Ending frame image
# URL"; links signed once; a Task Result that knows a new task only after 90 s.
STRICT_DOCS_SAID = (
    "raw-fails images, voice ids, multi_prompt alone, URL-only end images, links signed "
    "once, Task Result 90 s behind"
)


def strict_docs(config: SimConfig) -> SimConfig:
    """``--strict-docs``: the preset the tests run a whole batch under, too."""
    config.readings = Readings("raw-fails", "ids", True, True)
    config.sign_links_once = True
    config.result_lag_s = max(config.result_lag_s, 90.0)
    return config


def run_simulator(args: argparse.Namespace) -> int:
    """``kling-batch sim``: serve until Ctrl-C; a port already taken is a message."""
    config = SimConfig(
        api_key=args.api_key,
        queue_s=args.queue_s,
        generation_s=args.generation_s,
        url_ttl_s=args.url_ttl_s,
        sign_links_once=args.sign_links_once,
        fail_rate=args.fail_rate,
        stall_rate=args.stall_rate,
        error_500_rate=args.error_500_rate,
        error_503_rate=args.error_503_rate,
        drop_after_create_rate=args.drop_after_create_rate,
        error_500_after_create_rate=args.error_500_after_create_rate,
        cut_first_download_rate=args.cut_first_download_rate,
        video_duration_s=args.video_duration_s,
        video_source=args.video_source,
        video_width=args.video_width,
        submit_limit=int(args.submit_limit.count) if args.submit_limit else None,
        limit_window_s=args.submit_limit.period_s if args.submit_limit else 60.0,
        balance_usd=args.balance_usd,
        credit_usd=args.credit_usd,
        poll_outage_s=args.poll_outage,
        result_lag_polls=args.result_lag_polls,
        result_lag_s=args.result_lag_s,
        refuse_prompt_words=tuple(args.refuse_prompt_word),
        prompt_fates={word: "moderated" for word in args.moderate_prompt_word},
        seed=args.seed,
        readings=Readings(
            args.image_form, args.voice_form, args.multi_prompt_alone, args.end_image_url_only
        ),
    )
    if args.strict_docs:
        strict_docs(config)
    try:
        asyncio.run(serve_forever(config, args.host, args.port, args.media_port))
    except KeyboardInterrupt:
        print("simulator stopped")
    except OSError as exc:  # the port is taken, or not ours to bind
        print(
            f"error: the simulator cannot listen on {args.host}:{args.port} "
            f"(or media port {args.media_port}): {exc.strerror or exc}\n"
            "  choose another with --port (and --media-port), or stop what uses it",
            file=sys.stderr,
        )
        return 2
    return 0


def _rate(text: str) -> Rate:
    try:
        return Rate.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _window(text: str) -> tuple[float, float]:
    start, _, end = text.partition(":")
    try:
        return float(start), float(end)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a window looks like 2:30 (seconds), not {text!r}"
        ) from None
