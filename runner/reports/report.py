"""Build the run's report from the ledger alone: ``report.csv`` and ``report.html``
(and ``report.jsonl`` on request).

The ledger is the truth and the report a view of it, so ``kling-batch report DIR``
rebuilds exactly the same files at any time, mid-run or after a crash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from runner.core.atomic import write_text_atomically
from runner.core.pool import warm_up
from runner.ledger.file import LedgerReads
from runner.reports.failed import write_failed_manifests
from runner.reports.page import render_html, thumbnails
from runner.reports.sheet import SheetPage, write_contact_sheet
from runner.reports.summary import summarize
from runner.reports.table import build_frame, for_spreadsheets

REPORT_CSV = "report.csv"
REPORT_HTML = "report.html"
REPORT_JSONL = "report.jsonl"
# report.csv for spreadsheet programs: the same rows with a BOM (so Excel reads UTF-8,
# and CJK prompts are not garbled) and no cell that a spreadsheet would run as a formula.
REPORT_EXCEL_CSV = "report-excel.csv"


@dataclass(frozen=True)
class ReportFiles:
    csv: Path
    html: Path
    failed_yaml: Path | None  # the failed rows as a manifest, when there are any
    video_problems: int = 0  # videos not whole or not as asked (the summary's count)
    sheets: tuple[SheetPage, ...] = ()  # contact-sheet.jpg and its further pages


def write_reports(state: LedgerReads, run_dir: Path, formats: Sequence[str] = ()) -> ReportFiles:
    """Rewrite every report of the folder from the ledger; ``formats`` adds extra
    machine-readable copies (``jsonl``) beside ``report.csv``."""
    warm_up()  # the sheet's workers: their fork server starts while the table is built
    records = state.tasks()  # read once: a big batch's ledger is the slow part
    reviews = state.reviews()
    frame = build_frame(records, run_dir, reviews)
    failed = write_failed_manifests(records, run_dir)
    files = ReportFiles(
        run_dir / REPORT_CSV,
        run_dir / REPORT_HTML,
        failed.yaml if failed else None,
        video_problems=sum(1 for r in records if r.video_problem),
        sheets=tuple(write_contact_sheet(records, run_dir, run_dir.name, reviews=reviews)),
    )
    write_text_atomically(files.csv, frame.to_csv(index=False))
    write_text_atomically(run_dir / REPORT_EXCEL_CSV, for_spreadsheets(frame))
    if "jsonl" in formats:
        write_text_atomically(
            run_dir / REPORT_JSONL, frame.to_json(orient="records", lines=True, force_ascii=False)
        )
    summary = summarize(state, str(run_dir), records=records)
    films = {
        chain: f"films/{chain}.mp4"
        for chain in {r.chain for r in records if r.chain is not None}
        if (run_dir / "films" / f"{chain}.mp4").is_file()
    }
    thumbs = thumbnails(records, run_dir)
    page = render_html(frame, summary, run_dir.name, thumbs, files.sheets, films)
    write_text_atomically(files.html, page)
    return files
