"""Build the run's report from the ledger alone: ``report.csv`` and ``report.html``
(and ``report.jsonl`` on request).

The ledger is the truth and the report a view of it, so ``kling-batch report DIR``
rebuilds exactly the same files at any time, mid-run or after a crash.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from jobs import request_from_json
from jobs.images import is_url
from runner.core.atomic import write_text_atomically
from runner.core.causes import failure_class
from runner.core.records import TaskRecord, TaskStatus
from runner.ledger.transitions import RunState
from runner.media.picture_pool import first_frame_sent, planned_pictures
from runner.media.sidecars import POSTER_SUFFIX
from runner.reports.failed import write_failed_manifests
from runner.reports.sheet import small_picture, write_contact_sheet
from runner.reports.summary import RunSummary, no_video_reason, summarize

REPORT_CSV = "report.csv"
REPORT_HTML = "report.html"
REPORT_JSONL = "report.jsonl"
# report.csv for spreadsheet programs: the same rows with a BOM (so Excel reads UTF-8,
# and CJK prompts are not garbled) and no cell that a spreadsheet would run as a formula.
REPORT_EXCEL_CSV = "report-excel.csv"
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
THUMB_PX = 160

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
    "last_answer_at",
    "model",
    "settings",  # the model's other settings (mode, end_image, multi_prompt, ...), as JSON
    "video_s",  # the video's duration, measured from its file
    "video_problem",  # empty when the video is whole and as asked
    "poster_path",  # the video's first frame, beside it
    "failure_class",  # a failed task's cause: moderation, input, provider, account
    "sent_image",  # the picture as converted and sent (images/...); empty: sent as it is
    "conversion",  # what was done to it
    "video_url_expires_at",  # when video_url dies: by its own signature, else its ttl
]
# Settings with a column of their own; the rest of a model's settings go in "settings".
_OWN_COLUMNS = frozenset(
    {
        "image",
        "prompt",
        "duration",
        "aspect_ratio",
        "sound",
        "negative_prompt",
        "cfg_scale",
        "voice_list",
    }
)


@dataclass(frozen=True)
class ReportFiles:
    csv: Path
    html: Path
    failed_yaml: Path | None  # the failed rows as a manifest, when there are any
    video_problems: int = 0  # videos not whole or not as asked (the summary's count)
    sheets: tuple[Path, ...] = ()  # contact-sheet.png and its further pages


def build_frame(records: Sequence[TaskRecord], run_dir: Path | None = None) -> pd.DataFrame:
    rows = []
    for record in records:
        request = request_from_json(record.request_json)
        voices = request.get("voice_list")
        rows.append(
            {
                "task_key": record.task_key,
                "row_id": record.row_id,
                "source": record.source,
                "image": record.image,
                "prompt": request.get("prompt"),
                "duration": request.get("duration"),
                "aspect_ratio": request.get("aspect_ratio"),
                "sound": request.get("sound"),
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
                "cfg_scale": request.get("cfg_scale"),
                "voice_list": ";".join(voices) if voices is not None else None,
                "last_answer_at": _iso(record.last_answer_at),
                "model": request.model.name,
                "settings": _other_settings(request.values),
                "video_s": record.video_s,
                "video_problem": record.video_problem,
                "poster_path": _poster(record, run_dir),
                "failure_class": str(failure_class(record.error))
                if record.status == TaskStatus.FAILED
                else None,
                **_sent_image(record, run_dir),
                "video_url_expires_at": _iso(record.video_url_expires_at),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def _poster(record: TaskRecord, run_dir: Path | None) -> str | None:
    if not record.video_path or run_dir is None:
        return None
    poster = Path(record.video_path).with_suffix(POSTER_SUFFIX)
    return str(poster) if (run_dir / poster).is_file() else None


def _video_tag(row: dict[str, Any]) -> str:
    """``<video>`` with its poster, so a card shows a picture before the video loads (a
    GIF the API made is a picture: ``<img>``)."""
    e = html.escape
    source = e(quote(row["video_path"]))
    if row["video_path"].endswith(".gif"):
        return f'<img class="video" loading="lazy" alt="video" src="{source}">'
    poster = f' poster="{e(quote(row["poster_path"]))}"' if row.get("poster_path") else ""
    return f'<video controls preload="metadata"{poster} src="{source}"></video>'


def _other_settings(values: dict[str, Any]) -> str | None:
    other = {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in values.items()
        if name not in _OWN_COLUMNS and value not in (None, "", ())
    }
    return json.dumps(other, ensure_ascii=False, sort_keys=True) if other else None


def write_reports(state: RunState, run_dir: Path, formats: Sequence[str] = ()) -> ReportFiles:
    """Rewrite every report of the folder from the ledger; ``formats`` adds extra
    machine-readable copies (``jsonl``) beside ``report.csv``."""
    records = state.tasks()  # read once: a big batch's ledger is the slow part
    frame = build_frame(records, run_dir)
    failed = write_failed_manifests(records, run_dir)
    files = ReportFiles(
        run_dir / REPORT_CSV,
        run_dir / REPORT_HTML,
        failed.yaml if failed else None,
        video_problems=sum(1 for r in records if r.video_problem),
        sheets=tuple(write_contact_sheet(records, run_dir, run_dir.name)),
    )
    write_text_atomically(files.csv, frame.to_csv(index=False))
    write_text_atomically(run_dir / REPORT_EXCEL_CSV, for_spreadsheets(frame))
    if "jsonl" in formats:
        write_text_atomically(
            run_dir / REPORT_JSONL, frame.to_json(orient="records", lines=True, force_ascii=False)
        )
    summary = summarize(state, str(run_dir), records=records)
    page = render_html(frame, summary, run_dir.name, _thumbnails(records, run_dir), files.sheets)
    write_text_atomically(files.html, page)
    return files


def for_spreadsheets(frame: pd.DataFrame) -> str:
    """``report.csv`` as a spreadsheet should open it. A text cell that starts like a
    formula (``=``, ``+``, ``-``, ``@``) gets a leading apostrophe, the usual defence
    against CSV formula injection: a prompt such as ``=HYPERLINK(...)`` stays text.
    ``report.csv`` itself is left exact, for pandas and scripts."""
    safe = frame.map(
        lambda v: f"'{v}" if isinstance(v, str) and v.startswith(_FORMULA_STARTS) else v
    )
    return "\ufeff" + safe.to_csv(index=False)


def _sent_image(record: TaskRecord, run_dir: Path | None) -> dict[str, str | None]:
    """The first frame as converted and sent, and what was done: beside ``image`` (the
    file as the manifest names it), so a person sees both."""
    pictures = {p.field: p for p in planned_pictures(record)}
    first = pictures.get("image")
    if first is None:
        return {"sent_image": None, "conversion": None}
    sent = str(run_dir / first.name) if run_dir is not None else first.name
    return {"sent_image": sent, "conversion": first.conversion.describe()}


def _thumbnails(records: Sequence[TaskRecord], run_dir: Path) -> dict[str, str]:
    """task key -> a small inline JPEG of its first frame as sent (local images only:
    the page must open without a network). Each file is read once however many tasks
    use it."""
    by_image: dict[str, str | None] = {}
    thumbs: dict[str, str] = {}
    for record in records:
        image = first_frame_sent(record, run_dir)
        if not image:
            continue  # text to video: no source image
        if image not in by_image:
            by_image[image] = None if is_url(image) else _thumbnail(Path(image))
        thumb = by_image[image]
        if thumb:
            thumbs[record.task_key] = thumb
    return thumbs


def _thumbnail(path: Path, size: int = THUMB_PX) -> str | None:
    picture = small_picture(path, size)
    if picture is None:
        return None  # moved or unreadable since the run: the card says so
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode()


def render_html(
    frame: pd.DataFrame,
    summary: RunSummary,
    title: str,
    thumbs: dict[str, str],
    sheets: Sequence[Path] = (),
) -> str:
    """A page a person looks at in the morning: the summary, then one card per task with
    its source image, settings, status, the video playing from its local file, and the
    reason for a failure; filter by status and search by text. No network needed."""
    rows = _rows(frame)
    cards = "\n".join(_card(row, thumbs.get(row["task_key"])) for row in rows)
    buttons = "\n".join(
        f'<button type="button" data-filter="{html.escape(s)}">{html.escape(s)} '
        f"<span>{n}</span></button>"
        for s, n in summary.counts.items()
    ) + "".join(  # failures by cause: a moderated row is not a model down
        f'\n<button type="button" data-filter="failed:{html.escape(c)}">failed: '
        f"{html.escape(c)} <span>{n}</span></button>"
        for c, n in summary.failures_by_class.items()
    )
    facts = [
        ("tasks", str(summary.total)),
        ("estimated cost", f"${summary.est_total_usd:,.2f}"),
        ("spent (estimate)", f"${summary.spent_usd:,.2f}"),
        (
            "generation p50 / p95",
            f"{_seconds(summary.generation_p50_s)} / {_seconds(summary.generation_p95_s)}",
        ),
        ("started", _iso(summary.started_at) or "not yet"),
        ("finished", _iso(summary.finished_at) or "not yet"),
        *([("video problems", str(summary.video_problems))] if summary.video_problems else []),
    ]
    header = "\n".join(
        f"<div><dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd></div>" for k, v in facts
    )
    counts = " · ".join(f"{n} {html.escape(s)}" for s, n in summary.counts.items())
    return _page_template().format(
        compare=_comparison(rows, thumbs),
        sheets=_sheet_links(sheets),
        title=html.escape(title),
        header=header,
        counts=counts or "no tasks",
        buttons=buttons,
        total=summary.total,
        cards=cards,
    )


def _sheet_links(sheets: Sequence[Path]) -> str:
    """Links to the contact sheet's pages (beside the page, so relative links)."""
    if not sheets:
        return ""
    links = " · ".join(
        f'<a href="{html.escape(quote(page.name))}">'
        f"{'contact sheet' if number == 1 else f'page {number}'}</a>"
        for number, page in enumerate(sheets, start=1)
    )
    return f'<p class="sheets">The night at a glance: {links}</p>'


def _comparison(rows: list[dict[str, Any]], thumbs: dict[str, str]) -> str:
    """Models side by side, when a run has several: one line per input (image, prompt,
    settings), one column per model, each cell the video (or why there is none) with
    its generation time and estimated cost; buttons show one model's column at a time."""
    models = sorted({str(row["model"]) for row in rows})
    if len(models) < 2:
        return ""
    e = html.escape
    lines: dict[tuple[str, ...], dict[str, dict[str, Any]]] = {}
    firsts: dict[tuple[str, ...], dict[str, Any]] = {}
    for row in rows:
        # One input: the same row, image, prompt and length; models differ in the rest.
        same_input = tuple(str(row[c]) for c in ("row_id", "image", "prompt", "duration"))
        lines.setdefault(same_input, {}).setdefault(str(row["model"]), row)
        firsts.setdefault(same_input, row)
    head = "".join(f'<th data-model="{e(m)}">{e(m)}</th>' for m in models)
    body = []
    for same_input, by_model in lines.items():
        first = firsts[same_input]
        thumb = thumbs.get(str(first["task_key"]))
        image = f'<img class="thumb" alt="source image" src="{thumb}">' if thumb else ""
        settings = f"{first['duration']} s" + (
            f" · {first['aspect_ratio']}" if first["aspect_ratio"] else ""
        )
        cells = "".join(_compare_cell(by_model.get(m), m) for m in models)
        body.append(
            f'<tr><td class="input">{image}<p>{e(str(first["prompt"]))}</p>'
            f'<p class="meta">{e(settings)}</p></td>{cells}</tr>'
        )
    buttons = '<button type="button" data-model-filter="" class="active">all models</button>'
    buttons += "".join(
        f'<button type="button" data-model-filter="{e(m)}">{e(m)}</button>' for m in models
    )
    return (
        f'<section id="compare"><h2>Models side by side</h2><div class="controls">{buttons}'
        f'</div><table class="compare"><thead><tr><th>input</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></section>"
    )


def _compare_cell(row: dict[str, Any] | None, model: str) -> str:
    e = html.escape
    if row is None:
        return f'<td data-model="{e(model)}" class="none">not asked for</td>'
    if row["video_path"]:
        media = _video_tag(row)
    else:
        media = f'<span class="badge s-{e(row["status"])}">{e(row["status"])}</span>'
    timing = f"{row['generation_s']} s · " if row["generation_s"] is not None else ""
    return (
        f'<td data-model="{e(model)}">{media}'
        f'<p class="meta">{e(timing)}${row["est_cost_usd"]:.2f}</p></td>'
    )


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return [{str(k): v for k, v in row.items()} for row in records]


def _card(row: dict[str, Any], thumb: str | None) -> str:
    e = html.escape
    status = row["status"]
    settings = [
        str(row["model"]),
        f"{row['duration']} s",
        *([str(row["aspect_ratio"])] if row["aspect_ratio"] else []),
        *([] if row["sound"] is None else ["sound" if row["sound"] else "no sound"]),
        *([] if row["cfg_scale"] is None else [f"cfg {row['cfg_scale']}"]),
        *([row["settings"]] if row["settings"] else []),
    ]
    if row["voice_list"]:
        settings.append(f"voices {row['voice_list']}")
    if row["negative_prompt"]:
        settings.append(f"not: {row['negative_prompt']}")
    if row["video_path"]:
        media = _video_tag(row)
    else:
        media = f'<div class="novideo">{e(no_video_reason(status))}</div>'
    if thumb:
        source = f'<img class="thumb" alt="source image" src="{thumb}">'
    elif row["image"]:
        source = f'<div class="thumb missing" title="{e(row["image"])}">image not shown</div>'
    else:
        source = '<div class="thumb missing">text to video</div>'  # no source image
    error = f'<p class="error">{e(row["error"])}</p>' if row["error"] else ""
    if row["video_problem"] and row["video_path"]:  # kept, but not as asked
        error += f'<p class="error video-problem">video {e(row["video_problem"])}</p>'
    timing = f" · {row['generation_s']} s" if row["generation_s"] is not None else ""
    searchable = " ".join(
        str(row[c] or "")
        for c in ("task_key", "prompt", "negative_prompt", "error", "task_id", "row_id", "image")
    ).lower()
    cause = row["failure_class"] or ""
    badge = f' <span class="badge cause">{e(cause)}</span>' if cause else ""
    return f"""<article class="card" data-status="{e(status)}" data-cause="{e(cause)}"
  data-text="{e(searchable)}">
  <div class="media">{media}</div>
  <div class="body">
    <header><span class="badge s-{e(status)}">{e(status)}</span>{badge}
      <code class="key">{e(row["task_key"])}</code></header>
    <div class="source">{source}<p class="prompt">{e(row["prompt"])}</p></div>
    <p class="settings">{e(" · ".join(settings))}</p>
    {error}
    <p class="meta">task id <code>{e(row["task_id"] or "none")}</code> · attempts
      {row["attempts"]} · ${row["est_cost_usd"]:.2f}{timing}</p>
  </div>
</article>"""


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


@functools.cache
def _page_template() -> str:
    """The page's HTML, CSS and script (``runner/assets/report.html``, a ``str.format``
    template: its literal braces are doubled)."""
    return resources.files("runner").joinpath("assets/report.html").read_text(encoding="utf-8")
