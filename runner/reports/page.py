"""``report.html``: a page a person looks at, drawn from the report's rows: every task a
card (its source picture, prompt, status, the video playing), a comparison view when a
run compares models, filters and search. Autoescaped by hand where text goes in.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from runner.core.records import TaskRecord
from runner.media.picture_pool import first_frame_sent
from runner.media.thumbs import source_thumbnail
from runner.reports.chains_page import chains_section
from runner.reports.sheet import SheetPage
from runner.reports.summary import RunSummary, no_video_reason, same_input
from runner.reports.table import iso_time


def _video_tag(row: dict[str, Any]) -> str:
    """``<video>`` with its poster, so a card shows a picture before the video loads (a
    GIF the API made is a picture: ``<img>``)."""
    e = html.escape
    source = e(quote(row["video_path"]))
    if row["video_path"].endswith(".gif"):
        return f'<img class="video" loading="lazy" alt="video" src="{source}">'
    poster = f' poster="{e(quote(row["poster_path"]))}"' if row.get("poster_path") else ""
    return f'<video controls preload="metadata"{poster} src="{source}"></video>'


def thumbnails(records: Sequence[TaskRecord], run_dir: Path) -> dict[str, str]:
    """task key -> its first frame's thumbnail as sent, a link relative to the page
    (local images only: the page must open without a network). Each kept thumbnail is
    looked up once however many tasks use it, and made only if the night did not."""
    by_image: dict[str, str | None] = {}
    thumbs: dict[str, str] = {}
    for record in records:
        image = first_frame_sent(record, run_dir)
        if image not in by_image:
            kept = source_thumbnail(run_dir, image)
            by_image[image] = quote(kept.relative_to(run_dir).as_posix()) if kept else None
        if thumb := by_image[image]:
            thumbs[record.task_key] = thumb
    return thumbs


SHEET_LINKS_INLINE = 12  # more contact-sheet pages than this get an index
CARDS_PER_TEMPLATE = 200  # cards parsed but not drawn: see the page's script


def _thumb_tag(thumb: str) -> str:
    return f'<img class="thumb" alt="source image" loading="lazy" src="{html.escape(thumb)}">'


def render_html(
    frame: pd.DataFrame,
    summary: RunSummary,
    title: str,
    thumbs: dict[str, str],
    sheets: Sequence[SheetPage] = (),
    films: Mapping[str, str] | None = None,
) -> str:
    """A page a person looks at in the morning: the summary, then one card per task with
    its source image, settings, status, the video playing from its local file, and the
    reason for a failure; filter by status and search by text. No network needed."""
    rows = _rows(frame)
    # Every card is in the page, inert in <template>s: the page's script shows the ones
    # the filters let through as they scroll into view, so 20,000 cards open as fast as
    # a hundred (their videos, pictures and layout cost nothing until then).
    cards = [_card(row, thumbs.get(row["task_key"])) for row in rows]
    templates = "\n".join(
        '<template class="cards">\n'
        + "\n".join(cards[i : i + CARDS_PER_TEMPLATE])
        + "\n</template>"
        for i in range(0, len(cards), CARDS_PER_TEMPLATE)
    )
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
        ("started", iso_time(summary.started_at) or "not yet"),
        ("finished", iso_time(summary.finished_at) or "not yet"),
        *([("video problems", str(summary.video_problems))] if summary.video_problems else []),
    ]
    header = "\n".join(
        f"<div><dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd></div>" for k, v in facts
    )
    counts = " · ".join(f"{n} {html.escape(s)}" for s, n in summary.counts.items())
    return _page_template().format(
        compare=_comparison(rows, thumbs) + chains_section(rows, films or {}),
        sheets=_sheet_links(sheets),
        title=html.escape(title),
        header=header,
        counts=counts or "no tasks",
        buttons=buttons,
        total=summary.total,
        cards=templates,
    )


def _sheet_links(sheets: Sequence[SheetPage]) -> str:
    """Links to the contact sheet's pages (beside the page, so relative links); past
    :data:`SHEET_LINKS_INLINE` pages, an index instead: each page's first and last task
    and how many of its tasks have no video, so a person opens those pages first and
    need not look through hundreds."""
    if not sheets:
        return ""
    e = html.escape

    def link(number: int, page: SheetPage) -> str:
        name = "contact sheet" if number == 1 else f"page {number}"
        return f'<a href="{e(quote(page.path.name))}">{name}</a>'

    numbered = list(enumerate(sheets, start=1))
    if len(sheets) <= SHEET_LINKS_INLINE:
        links = " · ".join(link(number, page) for number, page in numbered)
        return f'<p class="sheets">The night at a glance: {links}</p>'
    rows = "".join(_index_row(link(number, page), page) for number, page in numbered)
    attention = sum(1 for page in sheets if page.not_succeeded)
    return (
        f'<details class="sheets"><summary>The night at a glance: {link(1, sheets[0])} and '
        f"{len(sheets) - 1} more pages ({attention} with tasks that have no video)</summary>"
        '<table class="sheet-index"><thead><tr><th>page</th><th>tasks</th><th>how many</th>'
        f"<th>without a video</th></tr></thead><tbody>{rows}</tbody></table></details>"
    )


def _index_row(link: str, page: SheetPage) -> str:
    e = html.escape
    marked = ' class="attention"' if page.not_succeeded else ""
    return (
        f"<tr{marked}><td>{link}</td>"
        f"<td><code>{e(page.first_key)}</code> … <code>{e(page.last_key)}</code></td>"
        f"<td>{page.tasks}</td><td>{page.not_succeeded or ''}</td></tr>"
    )


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
        key = same_input(row["row_id"], row["image"], row["prompt"], row["duration"])
        lines.setdefault(key, {}).setdefault(str(row["model"]), row)
        firsts.setdefault(key, row)
    head = "".join(f'<th data-model="{e(m)}">{e(m)}</th>' for m in models)
    body = []
    for key, by_model in lines.items():
        first = firsts[key]
        thumb = thumbs.get(str(first["task_key"]))
        image = _thumb_tag(thumb) if thumb else ""
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
        source = _thumb_tag(thumb)
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


@functools.cache
def _page_template() -> str:
    """The page's HTML, CSS and script (``runner/assets/report.html``, a ``str.format``
    template: its literal braces are doubled)."""
    return resources.files("runner").joinpath("assets/report.html").read_text(encoding="utf-8")
