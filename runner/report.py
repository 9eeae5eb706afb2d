"""Build the run's report from the ledger alone: ``report.csv`` and ``report.html``.

The ledger is the truth and the report a view of it, so ``kling-batch report DIR``
rebuilds exactly the same files at any time, mid-run or after a crash.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from runner.atomic import write_text_atomically
from runner.failed import write_failed_manifests
from runner.state import RunState

REPORT_CSV = "report.csv"
REPORT_HTML = "report.html"

COLUMNS = [
    "task_key",
    "row_id",
    "source",
    "image",
    "prompt",
    "duration",
    "aspect_ratio",
    "sound",
    "status",
    "task_id",
    "attempts",
    "error",
    "video_url",
    "video_path",
    "submitted_at",
    "finished_at",
    "generation_s",
    "est_cost_usd",
    "negative_prompt",
    "cfg_scale",
    "voice_list",
]


@dataclass(frozen=True)
class ReportFiles:
    csv: Path
    html: Path
    failed_yaml: Path | None  # the failed rows as a manifest, when there are any


def build_frame(state: RunState) -> pd.DataFrame:
    rows = []
    for record in state.tasks():
        request = json.loads(record.request_json)
        rows.append(
            {
                "task_key": record.task_key,
                "row_id": record.row_id,
                "source": record.source,
                "image": record.image,
                "prompt": request["prompt"],
                "duration": request["duration"],
                "aspect_ratio": request["aspect_ratio"],
                "sound": request["sound"],
                "status": str(record.status),
                "task_id": record.task_id,
                "attempts": record.attempts,
                "error": record.error,
                "video_url": record.video_url,
                "video_path": record.video_path,
                "submitted_at": _iso(record.submitted_at),
                "finished_at": _iso(record.finished_at),
                "generation_s": None
                if record.generation_s is None
                else round(record.generation_s, 1),
                "est_cost_usd": record.est_cost_usd,
                "negative_prompt": request.get("negative_prompt"),
                "cfg_scale": request["cfg_scale"],
                "voice_list": ";".join(request.get("voice_list") or []),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def write_reports(state: RunState, run_dir: Path) -> ReportFiles:
    frame = build_frame(state)
    failed = write_failed_manifests(state, run_dir)
    files = ReportFiles(
        run_dir / REPORT_CSV, run_dir / REPORT_HTML, failed.yaml if failed else None
    )
    write_text_atomically(files.csv, frame.to_csv(index=False))
    write_text_atomically(files.html, render_html(frame, run_dir.name))
    return files


def render_html(frame: pd.DataFrame, title: str) -> str:
    """A plain page a person can read: counts, then one line per task with its video."""
    counts = frame["status"].value_counts().to_dict() if len(frame) else {}
    summary = " · ".join(f"{n} {html.escape(s)}" for s, n in sorted(counts.items()))
    shown = frame[
        ["task_key", "status", "prompt", "duration", "aspect_ratio", "sound", "task_id", "error"]
    ].copy()
    shown.insert(
        1,
        "video",
        [
            f'<video src="{html.escape(p)}" controls preload="metadata" width="240"></video>'
            if p
            else ""
            for p in frame["video_path"].fillna("")
        ],
    )
    for column in ("task_key", "status", "prompt", "task_id", "error", "aspect_ratio"):
        shown[column] = shown[column].fillna("").astype(str).map(html.escape)
    table = shown.to_html(index=False, escape=False, border=0, classes="tasks", na_rep="")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kling-batch: {html.escape(title)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; }}
table.tasks {{ border-collapse: collapse; width: 100%; }}
table.tasks th, table.tasks td {{ border-bottom: 1px solid #ddd; padding: 6px;
  text-align: left; vertical-align: top; }}
</style></head>
<body><h1>kling-batch: {html.escape(title)}</h1>
<p>{len(frame)} tasks: {summary or "none"} · estimated cost ${frame["est_cost_usd"].sum():.2f}</p>
{table}
</body></html>
"""


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
