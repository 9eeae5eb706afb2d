"""The commands that only read: ``report``, ``sheet``, ``status``, ``export`` and ``models``. They
take no lock and write nothing but their own files, so they work while a run holds
the folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from jobs import DEFAULT_MODEL, MODELS, model_as_json
from runner.cli import chain_words, console
from runner.cli import status_words as status_console
from runner.core.exits import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE
from runner.engine.progress import progress_line
from runner.ledger.file import LedgerReads
from runner.ledger.transitions import RunState
from runner.reports.export import export_kept
from runner.reports.report import write_reports
from runner.reports.sheet import write_contact_sheet
from runner.reports.summary import summarize
from runner.run.films import chains_of, make_films
from runner.run.folder import require_ledger
from runner.run.lock import lock_holder


def _read_folder(run_dir: Path) -> LedgerReads:
    """A run folder for reading: no lock is taken, so this works while a run holds it."""
    require_ledger(run_dir)
    return RunState.open(run_dir, read_only=True)


def cmd_export(args: argparse.Namespace) -> int:
    state = _read_folder(args.run_dir)
    try:
        done = export_kept(state, args.run_dir, args.kept)
    finally:
        state.close()
    if not (done.copied or done.already or done.missing):
        print(f"{args.run_dir}: no video is kept yet (kling-batch review {args.run_dir})")
        return EXIT_OK
    print(
        f"{len(done.copied)} kept video(s) copied to {args.kept}"
        + (f", {len(done.already)} already there" if done.already else "")
    )
    if done.missing:
        keys = ", ".join(done.missing[:10])
        console.error(
            f"{len(done.missing)} kept task(s) have no whole video here: {keys} "
            f"(kling-batch resume {args.run_dir} fetches what can be fetched)"
        )
        return EXIT_SOME_FAILED
    return EXIT_OK


def cmd_stitch(args: argparse.Namespace) -> int:
    state = _read_folder(args.run_dir)
    try:
        if args.chain is None and not args.all and not chains_of(state.tasks()):
            print(f"{args.run_dir}: no chain to stitch (--all joins the whole run)")
            return EXIT_OK
        try:
            results = make_films(
                state, args.run_dir, args.chain, whole_run=args.all, crossfade_s=args.crossfade
            )
        except KeyError as unknown:
            console.error(f"error: no such chain: {unknown.args[0]}")
            return EXIT_USAGE
        write_reports(state, args.run_dir)  # the page plays the films
    finally:
        state.close()
    chain_words.films(args.run_dir, results)
    return EXIT_OK if all(r.film for r in results) else EXIT_SOME_FAILED


def cmd_report(args: argparse.Namespace) -> int:
    state = _read_folder(args.run_dir)
    try:
        files = write_reports(state, args.run_dir, args.format)
        print(progress_line(state.counts(), 0))
        print(f"report: {files.csv}\n        {files.html}")
        if files.sheets:
            print(f"        {files.sheets[0].path}")
    finally:
        state.close()
    return EXIT_OK


def cmd_sheet(args: argparse.Namespace) -> int:
    state = _read_folder(args.run_dir)
    try:
        # Asked for by name: every page drawn again (``report`` keeps pages drawn from
        # what they would show now).
        pages = write_contact_sheet(
            state.tasks(), args.run_dir, args.run_dir.name, again=True, reviews=state.reviews()
        )
    finally:
        state.close()
    print("contact sheet: " + "\n               ".join(str(page.path) for page in pages))
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    holder = lock_holder(args.run_dir)
    state = _read_folder(args.run_dir)
    try:
        live = holder.describe() if holder else None
        summary = summarize(state, str(args.run_dir), live_run=live)
    finally:
        state.close()
    if args.json:
        print(json.dumps(summary.as_json(), indent=2))
    else:
        status_console.status(args.run_dir, summary)
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps([model_as_json(m) for m in MODELS.values()], indent=2))
    else:
        console.models(list(MODELS.values()), DEFAULT_MODEL)
    return EXIT_OK
