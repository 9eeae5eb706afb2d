"""The command line: ``kling-batch validate | run | report | sim``.

Exit codes (also in the README):
    0   every task succeeded
    1   the run finished, but some tasks failed, are unknown, expired or still pending
    2   usage or manifest error: nothing was submitted
    3   the API stopped the run (bad key, no balance): state saved, ``run`` again resumes
    130 interrupted (Ctrl-C): state saved, ``run`` again resumes
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from runner import manifest as manifests
from runner.client import DEFAULT_BASE_URL, NovitaClient
from runner.engine import EngineConfig, RunOutcome, progress_line, run_engine
from runner.errors import ManifestError
from runner.limits import Rate
from runner.logs import setup_logging
from runner.plan import Plan, PlannedTask, plan
from runner.poll import PollPolicy
from runner.report import write_reports
from runner.simulator import SimConfig, Simulator, serve_forever
from runner.state import STATE_FILE, PlanConflict, RunState, TaskStatus

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_STOPPED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
SIMULATOR_API = "embedded simulator"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print(
            "\ninterrupted: state is saved; run the same command again to resume", file=sys.stderr
        )
        return EXIT_INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kling-batch",
        description="Batches of Kling V2.6 Pro image-to-video on Novita AI: "
        "validate, run, resume, report.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser(
        "validate", help="check a manifest: problems, task count, cost (no network)"
    )
    validate.add_argument("manifest", type=Path)
    _add_manifest_options(validate)
    validate.set_defaults(handler=cmd_validate)

    run = commands.add_parser("run", help="submit, poll, download and report; run again to resume")
    run.add_argument("manifest", type=Path)
    _add_manifest_options(run)
    run.add_argument("--out", type=Path, help="run folder (default: outputs/<manifest name>)")
    run.add_argument("--yes", action="store_true", help="spend without asking")
    run.add_argument("--submit-rate", type=Rate.parse, default=Rate(20, 60), help="default 20/min")
    run.add_argument("--poll-rate", type=Rate.parse, default=Rate(5, 1), help="default 5/s")
    run.add_argument("--no-download", action="store_true", help="keep video URLs, don't download")
    run.add_argument(
        "--task-timeout",
        type=float,
        default=1800.0,
        metavar="SECONDS",
        help="per-task deadline (default 1800)",
    )
    run.add_argument(
        "--first-poll-s",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="first look at a new task (later polls follow its eta; default 5)",
    )
    run.add_argument(
        "--simulate",
        action="store_true",
        help="rehearse against an embedded simulator (no key, no cost)",
    )
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(handler=cmd_run)

    report = commands.add_parser(
        "report", help="rebuild report.csv and report.html from a run folder"
    )
    report.add_argument("run_dir", type=Path)
    report.set_defaults(handler=cmd_report)

    sim = commands.add_parser("sim", help="start the local API simulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8765)
    sim.add_argument(
        "--media-port", type=int, default=0, help="video host port (default: any free)"
    )
    sim.add_argument("--api-key", default=SimConfig.api_key)
    sim.add_argument("--queue-s", type=float, default=SimConfig.queue_s)
    sim.add_argument("--generation-s", type=float, default=SimConfig.generation_s)
    sim.add_argument("--url-ttl-s", type=float, default=SimConfig.url_ttl_s)
    sim.add_argument("--fail-rate", type=float, default=0.0)
    sim.add_argument("--stall-rate", type=float, default=0.0)
    sim.add_argument("--error-500-rate", type=float, default=0.0)
    sim.add_argument("--error-503-rate", type=float, default=0.0)
    sim.add_argument("--drop-after-create-rate", type=float, default=0.0)
    sim.add_argument(
        "--submit-limit", type=Rate.parse, help="server-side limit, e.g. 20/min (429 beyond)"
    )
    sim.add_argument("--seed", type=int, default=0)
    sim.set_defaults(handler=cmd_sim)
    return parser


def _add_manifest_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a default for every row (beats the manifest's own defaults; rows still win)",
    )


# --- validate ----------------------------------------------------------------------


def _load_plan(args: argparse.Namespace) -> Plan | None:
    try:
        overrides = manifests.parse_overrides(args.set)
        loaded = manifests.load(args.manifest, overrides)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    except ManifestError as exc:
        _print_problems(exc.problems)
        return None
    result = plan(loaded)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not result.ok:
        _print_problems(result.problems)
        return None
    return result


def _print_problems(problems: Sequence[object]) -> None:
    print(f"{len(problems)} problem(s); nothing was submitted:", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)


def _print_estimate(result: Plan, title: str) -> None:
    print(title)
    for duration, tier, count, cost in result.cost_breakdown():
        label = {"silent": "no sound", "sound": "with sound", "sound_voices": "sound + voices"}[
            tier
        ]
        print(f"  {count:>6} x {duration:>2}s {label:<15} ~ ${cost:,.2f}")
    print(f"  total (estimate) ~ ${result.total_cost:,.2f}")
    if result.sound_by_default:
        print(
            f"  note: {result.sound_by_default} task(s) say nothing about sound, so they get it "
            "(the API's default), at twice the price; set sound: false to save"
        )


def cmd_validate(args: argparse.Namespace) -> int:
    result = _load_plan(args)
    if result is None:
        return EXIT_USAGE
    rows = len({t.row_id for t in result.tasks})
    _print_estimate(result, f"{args.manifest}: OK, {len(result.tasks)} task(s) from {rows} row(s)")
    if result.url_images:
        print(f"  {result.url_images} task(s) use image URLs: the API fetches and checks those")
    return EXIT_OK


# --- run ---------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    result = _load_plan(args)
    if result is None:
        return EXIT_USAGE
    run_dir = args.out or Path("outputs") / args.manifest.stem
    api_key = secrets.token_urlsafe(16) if args.simulate else os.environ.get("NOVITA_API_KEY", "")
    if not api_key:
        print("error: set NOVITA_API_KEY (or use --simulate to rehearse)", file=sys.stderr)
        return EXIT_USAGE
    api = SIMULATOR_API if args.simulate else os.environ.get("NOVITA_BASE_URL", DEFAULT_BASE_URL)
    state = RunState.open(run_dir)
    try:
        to_send = _sync_run_folder(state, run_dir, result, api, args.manifest)
        if to_send is None:
            return EXIT_USAGE
        if to_send:
            _print_estimate(
                Plan(tasks=to_send),
                "to spend now:" if not args.simulate else "would cost (simulated: free):",
            )
            if not _confirmed(args):
                return EXIT_USAGE
        setup_logging(run_dir, verbose=args.verbose, secrets=[api_key])
        config = EngineConfig(
            submit_rate=args.submit_rate,
            poll_rate=args.poll_rate,
            download=not args.no_download,
            poll_policy=PollPolicy(
                task_timeout_s=args.task_timeout, first_delay_s=args.first_poll_s
            ),
        )
        outcome = asyncio.run(_run(state, run_dir, config, api_key, api))
        missing = state.missing_videos() if config.download else 0
        return _finish(state, run_dir, outcome, missing)
    finally:
        state.close()


def _sync_run_folder(
    state: RunState, run_dir: Path, result: Plan, api: str, manifest: Path
) -> list[PlannedTask] | None:
    """Record the plan in the ledger; the tasks still to send, or None if refused."""
    bound_to = state.meta().get("api", api)
    if bound_to != api:
        # Task ids belong to the API that created them: polling them elsewhere would
        # mark paid tasks as not found.
        print(
            f"error: {run_dir} holds tasks of {bound_to}, not {api}\n"
            "  use --out for a separate run folder",
            file=sys.stderr,
        )
        return None
    try:
        synced = state.sync_plan(result.tasks)
    except PlanConflict as conflict:
        print(
            f"error: {len(conflict.keys)} task(s) in {run_dir} were already sent with a "
            f"different request: {', '.join(conflict.keys[:10])}\n"
            "  use --out for a new run folder, or give the changed rows new ids",
            file=sys.stderr,
        )
        return None
    state.set_meta(manifest=str(manifest.resolve()), api=api)
    pending_keys = {r.task_key for r in state.tasks([TaskStatus.PENDING])}
    to_send = [t for t in result.tasks if t.key in pending_keys]
    print(f"{run_dir}: {len(result.tasks)} task(s): {synced.added} new, {len(to_send)} to submit")
    return to_send


def _confirmed(args: argparse.Namespace) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        print("refusing to spend without --yes when there is no terminal to ask", file=sys.stderr)
        return False
    answer = input("submit these tasks? [y/N] ").strip().lower()
    return answer in ("y", "yes")


async def _run(
    state: RunState, run_dir: Path, config: EngineConfig, api_key: str, api: str
) -> RunOutcome:
    if api != SIMULATOR_API:
        async with NovitaClient(api, api_key) as client:
            return await run_engine(state, client, run_dir, config)
    sim_config = SimConfig(api_key=api_key, queue_s=1.0, generation_s=2.0, seed=7)
    async with Simulator(sim_config) as sim:
        sim.script("submit", "429", "503")  # show the recovery a real night needs
        async with NovitaClient(sim.base_url, api_key) as client:
            return await run_engine(state, client, run_dir, config)


def _finish(state: RunState, run_dir: Path, outcome: RunOutcome, missing_videos: int) -> int:
    files = write_reports(state, run_dir)
    print(f"done in {outcome.elapsed_s:.1f}s: {progress_line(outcome.counts, 0)}")
    print(
        f"  {outcome.created} task(s) created this run, {outcome.polls} polls, "
        f"{outcome.downloaded} video(s) downloaded"
    )
    print(f"  report: {files.csv}\n          {files.html}")
    if outcome.stopped_by:
        hint = getattr(outcome.stop_error, "hint", "") or "fix the cause"
        print(
            f"stopped: {outcome.stopped_by}\n"
            f"  state is saved: {hint}, then run the same command again",
            file=sys.stderr,
        )
        return EXIT_STOPPED
    if missing_videos:
        print(f"  {missing_videos} video(s) not downloaded yet: run again to fetch them")
        return EXIT_SOME_FAILED
    return exit_code_for(outcome.counts)


def exit_code_for(counts: dict[str, int]) -> int:
    total = sum(counts.values())
    return EXIT_OK if total and counts.get(TaskStatus.SUCCEEDED, 0) == total else EXIT_SOME_FAILED


# --- report, sim --------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    if not (args.run_dir / STATE_FILE).is_file():
        print(f"error: {args.run_dir} is not a run folder (no {STATE_FILE})", file=sys.stderr)
        return EXIT_USAGE
    state = RunState.open(args.run_dir)
    try:
        files = write_reports(state, args.run_dir)
        print(progress_line(state.counts(), 0))
        print(f"report: {files.csv}\n        {files.html}")
    finally:
        state.close()
    return EXIT_OK


def cmd_sim(args: argparse.Namespace) -> int:
    config = SimConfig(
        api_key=args.api_key,
        queue_s=args.queue_s,
        generation_s=args.generation_s,
        url_ttl_s=args.url_ttl_s,
        fail_rate=args.fail_rate,
        stall_rate=args.stall_rate,
        error_500_rate=args.error_500_rate,
        error_503_rate=args.error_503_rate,
        drop_after_create_rate=args.drop_after_create_rate,
        submit_limit=int(args.submit_limit.count) if args.submit_limit else None,
        limit_window_s=args.submit_limit.period_s if args.submit_limit else 60.0,
        seed=args.seed,
    )
    try:
        asyncio.run(serve_forever(config, args.host, args.port, args.media_port))
    except KeyboardInterrupt:
        print("simulator stopped")
    return EXIT_OK
