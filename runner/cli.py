"""The command line: ``kling-batch validate | run | resume | rerun | report | sim``.

Exit codes (also in the README):
    0   every task succeeded
    1   the run finished, but some tasks failed, are unknown, expired or still pending
    2   usage or manifest error, or the user declined: nothing was submitted
    3   the API stopped the run (bad key, no balance): state saved, ``resume`` continues
    130 interrupted (Ctrl-C, SIGTERM): state saved, ``resume`` continues
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from runner import manifest as manifests
from runner.client import DEFAULT_BASE_URL, NovitaClient
from runner.engine import EngineConfig, RunOutcome, run_engine
from runner.errors import Interrupted, ManifestError
from runner.limits import Rate
from runner.logs import setup_logging
from runner.plan import Plan, plan
from runner.poll import PollPolicy
from runner.progress import LineProgress, LiveProgress, ProgressSink, progress_line
from runner.report import write_reports
from runner.simulator import SimConfig, Simulator, serve_forever
from runner.state import (
    FINAL,
    IN_FLIGHT,
    STATE_FILE,
    PlanConflict,
    RunState,
    TaskRecord,
    TaskStatus,
)
from runner.status import human_duration, summarize
from runner.stopping import StopSwitch, stop_on_signals

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_STOPPED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
SIMULATOR_API = "embedded simulator"
# How long the embedded simulator's tasks take: short enough for a demo, long enough
# that polling by eta is visible.
EMBEDDED_SIM_TIMES = {"queue_s": 1.0, "generation_s": 2.0}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("\ninterrupted: state is saved; `kling-batch resume DIR` continues", file=sys.stderr)
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
    run.add_argument(
        "--simulate",
        action="store_true",
        help="rehearse against an embedded simulator (no key, no cost)",
    )
    _add_engine_options(run)
    run.set_defaults(handler=cmd_run)

    resume = commands.add_parser(
        "resume", help="finish a run folder's batch (after a crash, Ctrl-C or a stop)"
    )
    resume.add_argument("run_dir", type=Path)
    _add_engine_options(resume)
    resume.set_defaults(handler=cmd_resume)

    rerun = commands.add_parser(
        "rerun", help="submit chosen finished tasks again, as new attempts (this costs money)"
    )
    rerun.add_argument("run_dir", type=Path)
    rerun.add_argument("--failed", action="store_true", help="tasks that failed or timed out")
    rerun.add_argument(
        "--unknown",
        action="store_true",
        help="tasks whose submit got no answer (they may exist and be billed already)",
    )
    rerun.add_argument("--expired", action="store_true", help="tasks whose video was lost")
    rerun.add_argument("--keys", default="", metavar="A,B", help="these task keys, any status")
    _add_engine_options(rerun)
    rerun.set_defaults(handler=cmd_rerun)

    status = commands.add_parser(
        "status", help="counts, spend, what is in flight and what comes next (no network)"
    )
    status.add_argument("run_dir", type=Path)
    status.add_argument("--json", action="store_true", help="the same, as JSON for scripts")
    status.set_defaults(handler=cmd_status)

    report = commands.add_parser(
        "report", help="rebuild report.csv and report.html from a run folder"
    )
    report.add_argument("run_dir", type=Path)
    report.add_argument(
        "--format",
        action="append",
        choices=["jsonl"],
        default=[],
        help="also write report.<format> (JSON Lines: one task per line)",
    )
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


def _add_engine_options(parser: argparse.ArgumentParser) -> None:
    """Options of every command that spends. They default to None so that ``resume``
    and ``rerun`` can tell "not given" (use what the run folder saved) from a value."""
    parser.add_argument("--yes", action="store_true", help="spend without asking")
    parser.add_argument(
        "--budget",
        type=float,
        metavar="USD",
        help="stop submitting before the run folder's estimated spend would pass this",
    )
    parser.add_argument(
        "--submit-rate", type=Rate.parse, help=f"default {RUN_DEFAULTS['submit_rate']}"
    )
    parser.add_argument("--poll-rate", type=Rate.parse, help=f"default {RUN_DEFAULTS['poll_rate']}")
    parser.add_argument(
        "--no-download",
        action="store_const",
        const=True,
        help="keep video URLs, don't download",
    )
    parser.add_argument(
        "--task-timeout",
        type=float,
        metavar="SECONDS",
        help=f"per-task deadline (default {RUN_DEFAULTS['task_timeout']:g})",
    )
    parser.add_argument(
        "--first-poll-s",
        type=float,
        metavar="SECONDS",
        help="first look at a new task; later polls follow its eta "
        f"(default {RUN_DEFAULTS['first_poll_s']:g})",
    )
    parser.add_argument(
        "--progress-every",
        type=float,
        metavar="SECONDS",
        help="without a terminal, a progress line this often "
        f"(default {RUN_DEFAULTS['progress_every']:g}; a terminal gets a live panel)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")


def _add_manifest_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a default for every row (beats the manifest's own defaults; rows still win)",
    )
    parser.add_argument(
        "--price-per-second",
        action="append",
        default=[],
        metavar="TIER=USD",
        help="override the estimate's price (tiers: silent, sound, sound_voices)",
    )


# --- validate ----------------------------------------------------------------------


def _load_plan(args: argparse.Namespace) -> Plan | None:
    try:
        overrides = manifests.parse_overrides(args.set)
        prices = manifests.parse_overrides(args.price_per_second, "--price-per-second")
        loaded = manifests.load(args.manifest, overrides)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    except ManifestError as exc:
        _print_problems(exc.problems)
        return None
    result = plan(loaded, prices)
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
    if result.prices:
        shown = ", ".join(f"{tier} ${usd:g}/s" for tier, usd in result.prices.items())
        print(f"  prices: {shown}")
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


# --- run, resume, rerun ------------------------------------------------------------

# What a run folder remembers of its options, so that `resume` runs it the same way.
RUN_DEFAULTS: dict[str, object] = {
    "submit_rate": "20/min",
    "poll_rate": "5/s",
    "task_timeout": 1800.0,
    "first_poll_s": 5.0,
    "no_download": False,
    "budget": None,
    "progress_every": 30.0,
}


def cmd_run(args: argparse.Namespace) -> int:
    result = _load_plan(args)
    if result is None:
        return EXIT_USAGE
    run_dir = args.out or Path("outputs") / args.manifest.stem
    api = SIMULATOR_API if args.simulate else os.environ.get("NOVITA_BASE_URL", DEFAULT_BASE_URL)
    api_key = _api_key(api)
    if api_key is None:
        return EXIT_USAGE
    state = RunState.open(run_dir)
    try:
        if not _same_api(state, run_dir, api) or not _sync_plan(state, run_dir, result):
            return EXIT_USAGE
        options = _options(args, saved=_saved_options(state))
        if not _confirm_spend(args, state, options, api):
            return EXIT_USAGE
        state.set_meta(manifest=str(args.manifest.resolve()), api=api, options=json.dumps(options))
        return _execute(state, run_dir, api, api_key, options, args.verbose)
    finally:
        state.close()


def cmd_resume(args: argparse.Namespace) -> int:
    state = _open_run_folder(args.run_dir)
    if state is None:
        return EXIT_USAGE
    try:
        connection = _folder_api(state, args.run_dir)
        if connection is None:
            return EXIT_USAGE
        api, api_key = connection
        options = _options(args, saved=_saved_options(state))
        if not _confirm_spend(args, state, options, api):
            return EXIT_USAGE
        state.set_meta(api=api, options=json.dumps(options))
        return _execute(state, args.run_dir, api, api_key, options, args.verbose)
    finally:
        state.close()


def cmd_rerun(args: argparse.Namespace) -> int:
    statuses = [
        status
        for status, chosen in (
            (TaskStatus.FAILED, args.failed),
            (TaskStatus.UNKNOWN, args.unknown),
            (TaskStatus.EXPIRED, args.expired),
        )
        if chosen
    ]
    keys = [k.strip() for k in args.keys.split(",") if k.strip()]
    if not statuses and not keys:
        print("error: say what to rerun: --failed, --unknown, --expired or --keys", file=sys.stderr)
        return EXIT_USAGE
    state = _open_run_folder(args.run_dir)
    if state is None:
        return EXIT_USAGE
    try:
        connection = _folder_api(state, args.run_dir)
        if connection is None:
            return EXIT_USAGE
        api, api_key = connection
        chosen = _rerun_choice(state, statuses, keys)
        if chosen is None:
            return EXIT_USAGE
        if not chosen:
            print(f"{args.run_dir}: no task to rerun")
            return EXIT_OK
        if TaskStatus.UNKNOWN in statuses or any(r.status == TaskStatus.UNKNOWN for r in chosen):
            print(
                "note: an 'unknown' task may already exist at the API and be billed; "
                "rerunning it can pay twice for that row"
            )
        options = _options(args, saved=_saved_options(state))
        if not _confirm_spend(args, state, options, api, extra=chosen):
            return EXIT_USAGE
        state.requeue([r.task_key for r in chosen], "rerun requested")
        print(f"{len(chosen)} task(s) queued again as new attempts")
        state.set_meta(api=api, options=json.dumps(options))
        return _execute(state, args.run_dir, api, api_key, options, args.verbose)
    finally:
        state.close()


def _rerun_choice(
    state: RunState, statuses: list[TaskStatus], keys: list[str]
) -> list[TaskRecord] | None:
    """The finished tasks chosen by status or key; None (after saying why) if a key is
    unknown or still running: a running task must not get a second, paid twin."""
    records = {r.task_key: r for r in state.tasks()}
    missing = [k for k in keys if k not in records]
    if missing:
        print(f"error: no such task key: {', '.join(missing)}", file=sys.stderr)
        return None
    busy = [k for k in keys if records[k].status not in FINAL]
    if busy:
        print(
            f"error: not finished, so not rerun: {', '.join(busy)} (resume finishes them first)",
            file=sys.stderr,
        )
        return None
    return [r for r in records.values() if r.status in statuses or r.task_key in keys]


def _open_run_folder(run_dir: Path) -> RunState | None:
    if not (run_dir / STATE_FILE).is_file():
        print(f"error: {run_dir} is not a run folder (no {STATE_FILE})", file=sys.stderr)
        return None
    return RunState.open(run_dir)


def _folder_api(state: RunState, run_dir: Path) -> tuple[str, str] | None:
    """The API a run folder's tasks belong to, and a key for it; None (after saying why)
    if there is no key, or NOVITA_BASE_URL points elsewhere than the folder's API."""
    api = state.meta().get("api") or os.environ.get("NOVITA_BASE_URL", DEFAULT_BASE_URL)
    pointed_at = api if api == SIMULATOR_API else os.environ.get("NOVITA_BASE_URL", api)
    api_key = _api_key(api)
    if api_key is None or not _same_api(state, run_dir, pointed_at):
        return None
    return api, api_key


def _saved_options(state: RunState) -> dict[str, object]:
    return json.loads(state.meta().get("options", "{}"))


def _api_key(api: str) -> str | None:
    if api == SIMULATOR_API:
        return secrets.token_urlsafe(16)
    key = os.environ.get("NOVITA_API_KEY", "")
    if not key:
        print("error: set NOVITA_API_KEY (or use run --simulate to rehearse)", file=sys.stderr)
        return None
    return key


def _same_api(state: RunState, run_dir: Path, api: str) -> bool:
    """Task ids belong to the API that created them: polling them elsewhere would mark
    paid tasks as not found. A folder is bound once it has sent something."""
    bound_to = state.meta().get("api", api)
    if bound_to == api or not state.sent_count():
        return True
    print(
        f"error: {run_dir} holds tasks of {bound_to}, not {api}\n"
        "  use --out for a separate run folder",
        file=sys.stderr,
    )
    return False


def _sync_plan(state: RunState, run_dir: Path, result: Plan) -> bool:
    """Record the plan in the ledger; False (after saying why) if it was refused."""
    try:
        synced = state.sync_plan(result.tasks)
    except PlanConflict as conflict:
        print(
            f"error: {len(conflict.keys)} task(s) in {run_dir} were already sent with a "
            f"different request: {', '.join(conflict.keys[:10])}\n"
            "  use --out for a new run folder, or give the changed rows new ids",
            file=sys.stderr,
        )
        return False
    pending = len(state.tasks([TaskStatus.PENDING]))
    print(f"{run_dir}: {len(result.tasks)} task(s): {synced.added} new, {pending} to submit")
    return True


def _options(args: argparse.Namespace, saved: dict[str, object]) -> dict[str, object]:
    """Given on the command line beats saved in the run folder beats the default."""
    options = {**RUN_DEFAULTS, **saved}
    for name in RUN_DEFAULTS:
        value = getattr(args, name, None)
        if value is not None:
            options[name] = str(value) if isinstance(value, Rate) else value
    return options


def _engine_config(options: dict[str, object]) -> EngineConfig:
    return EngineConfig(
        submit_rate=Rate.parse(str(options["submit_rate"])),
        poll_rate=Rate.parse(str(options["poll_rate"])),
        download=not options["no_download"],
        budget_usd=None if options["budget"] is None else float(options["budget"]),
        progress_every_s=float(options["progress_every"]),
        poll_policy=PollPolicy(
            task_timeout_s=float(options["task_timeout"]),
            first_delay_s=float(options["first_poll_s"]),
        ),
    )


def _confirm_spend(
    args: argparse.Namespace,
    state: RunState,
    options: dict[str, object],
    api: str,
    extra: Sequence[TaskRecord] = (),
) -> bool:
    """Show what is about to be spent (pending tasks plus ``extra``) and ask."""
    to_send = [r.as_planned() for r in [*state.tasks([TaskStatus.PENDING]), *extra]]
    if not to_send:
        return True
    simulated = api == SIMULATOR_API
    _print_estimate(
        Plan(tasks=to_send), "would cost (simulated: free):" if simulated else "to spend now:"
    )
    budget = options["budget"]
    if budget is not None:
        spent = state.committed_spend()
        print(
            f"  budget ${float(budget):,.2f}: ${spent:,.2f} already spent in this folder; "
            "submitting stops before the estimate would pass it"
        )
    if args.yes:
        return True
    if not sys.stdin.isatty():
        print("refusing to spend without --yes when there is no terminal to ask", file=sys.stderr)
        return False
    answer = input("submit these tasks? [y/N] ").strip().lower()
    return answer in ("y", "yes")


def _execute(
    state: RunState,
    run_dir: Path,
    api: str,
    api_key: str,
    options: dict[str, object],
    verbose: bool,
) -> int:
    setup_logging(run_dir, verbose=verbose, secrets=[api_key])
    config = _engine_config(options)
    progress = (
        LiveProgress(console_level=logging.DEBUG if verbose else logging.WARNING)
        if sys.stderr.isatty()
        else LineProgress(config.progress_every_s)
    )
    try:
        outcome = asyncio.run(_run(state, config, run_dir, api, api_key, progress))
    except asyncio.CancelledError:  # a second Ctrl-C: cut short, ledger still consistent
        write_reports(state, run_dir)
        _print_resume_hint(run_dir, "stopped at once")
        return EXIT_INTERRUPTED
    missing = state.missing_videos() if config.download else 0
    return _finish(state, run_dir, outcome, missing)


async def _run(
    state: RunState,
    config: EngineConfig,
    run_dir: Path,
    api: str,
    api_key: str,
    progress: ProgressSink,
) -> RunOutcome:
    stop = StopSwitch()

    def on_first_signal(name: str) -> None:
        print(
            f"\n{name}: no new submits; waiting for requests in flight "
            "(press Ctrl-C again to quit at once; nothing is lost either way)",
            file=sys.stderr,
            flush=True,
        )

    with stop_on_signals(stop, on_first_signal):
        if api != SIMULATOR_API:
            async with NovitaClient(api, api_key) as client:
                return await run_engine(
                    state, client, run_dir, config, stop=stop, progress=progress
                )
        sim_config = SimConfig(api_key=api_key, seed=7, **EMBEDDED_SIM_TIMES)
        async with Simulator(sim_config) as sim:
            # The embedded simulator starts empty: tasks an earlier (crashed) process
            # created there are adopted, so a resumed rehearsal finishes them.
            for record in state.tasks([*IN_FLIGHT, TaskStatus.SUCCEEDED]):
                if record.task_id and not record.video_path:
                    sim.adopt(record.task_id, record.request_json)
            if not state.sent_count():
                sim.script("submit", "429", "503")  # show the recovery a real night needs
            async with NovitaClient(sim.base_url, api_key) as client:
                return await run_engine(
                    state, client, run_dir, config, stop=stop, progress=progress
                )


def _print_resume_hint(run_dir: Path, what: str) -> None:
    print(
        f"{what}: state is saved in {run_dir}\n"
        f"  to continue: kling-batch resume {run_dir} (or the same run command again)",
        file=sys.stderr,
    )


def _finish(state: RunState, run_dir: Path, outcome: RunOutcome, missing_videos: int) -> int:
    files = write_reports(state, run_dir)
    print(f"done in {outcome.elapsed_s:.1f}s: {progress_line(outcome.counts, 0)}")
    print(
        f"  {outcome.created} task(s) created this run, {outcome.polls} polls, "
        f"{outcome.downloaded} video(s) downloaded; estimated spend ${outcome.spent_usd:,.2f}"
    )
    print(f"  report: {files.csv}\n          {files.html}")
    if files.failed_yaml:
        print(f"  failed rows as a manifest: {files.failed_yaml}")
    if isinstance(outcome.stop_error, Interrupted):
        _print_resume_hint(run_dir, f"interrupted ({outcome.stop_error})")
        return EXIT_INTERRUPTED
    if outcome.stopped_by:
        hint = getattr(outcome.stop_error, "hint", "") or "fix the cause"
        print(f"stopped: {outcome.stopped_by}", file=sys.stderr)
        _print_resume_hint(run_dir, hint)
        return EXIT_STOPPED
    if outcome.budget_reached:
        pending = outcome.counts.get(TaskStatus.PENDING, 0)
        print(
            f"  budget reached: {pending} task(s) left pending; "
            f"raise it with: kling-batch resume {run_dir} --budget USD"
        )
    if missing_videos:
        print(f"  {missing_videos} video(s) not downloaded yet: run again to fetch them")
        return EXIT_SOME_FAILED
    return exit_code_for(outcome.counts)


def exit_code_for(counts: dict[str, int]) -> int:
    total = sum(counts.values())
    return EXIT_OK if total and counts.get(TaskStatus.SUCCEEDED, 0) == total else EXIT_SOME_FAILED


# --- report, sim --------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    state = _open_run_folder(args.run_dir)
    if state is None:
        return EXIT_USAGE
    try:
        files = write_reports(state, args.run_dir, args.format)
        print(progress_line(state.counts(), 0))
        print(f"report: {files.csv}\n        {files.html}")
    finally:
        state.close()
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    state = _open_run_folder(args.run_dir)
    if state is None:
        return EXIT_USAGE
    try:
        summary = summarize(state, str(args.run_dir))
    finally:
        state.close()
    if args.json:
        print(json.dumps(summary.as_json(), indent=2))
        return EXIT_OK
    counts = ", ".join(f"{n} {s}" for s, n in summary.counts.items()) or "no tasks"
    print(f"{args.run_dir}: {summary.done}/{summary.total} done ({counts})")
    print(
        f"  spent ~ ${summary.spent_usd:,.2f} of an estimated ${summary.est_total_usd:,.2f} "
        "for every task once"
    )
    if summary.generation_p50_s is not None:
        print(
            f"  generation time p50 {summary.generation_p50_s:.1f}s, "
            f"p95 {summary.generation_p95_s:.1f}s"
        )
    if summary.in_flight:
        oldest = summary.oldest
        print(
            f"  {len(summary.in_flight)} in flight; oldest {oldest.task_key} "
            f"({oldest.status}, {human_duration(oldest.age_s)} since submit)"
        )
        for task in summary.in_flight[:10]:
            age = human_duration(task.age_s)
            print(f"    {task.task_key:<30} {task.status:<11} {age:>8}  {task.task_id}")
        if len(summary.in_flight) > 10:
            print(f"    ... and {len(summary.in_flight) - 10} more")
    if summary.videos_missing:
        print(f"  {summary.videos_missing} video(s) not downloaded yet")
    print("next:")
    for step in summary.next_steps:
        print(f"  {step}")
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
