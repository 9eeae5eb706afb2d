"""The page's chains: each chain as one line of its links (each link's first picture,
key and status, in order) followed by its film, when ``kling-batch stitch`` (or the
run's end) has made it. A handful of chains per run: drawn in the page, not lazily."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote


def chains_section(rows: Sequence[Mapping[str, Any]], films: Mapping[str, str]) -> str:
    """``rows``: the report's, in manifest order; ``films``: chain -> its film's link."""
    chains: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        if row.get("chain"):
            chains.setdefault(str(row["chain"]), []).append(row)
    if not chains:
        return ""
    e = html.escape
    parts = ['<section id="chains"><h2>Chains</h2>']
    for name, links in chains.items():
        seconds = sum(float(link["video_s"] or link["duration"] or 0) for link in links)
        made = sum(1 for link in links if link["video_path"])
        parts.append(
            f'<div class="chain" data-chain="{e(name)}"><h3>{e(name)} · {len(links)} links · '
            f'{seconds:.0f} s · {made} made</h3><ol class="links">'
        )
        for link in links:
            poster = link.get("poster_path")
            picture = f'<img alt="" loading="lazy" src="{e(quote(str(poster)))}">' if poster else ""
            parts.append(
                f'<li class="{e(str(link["status"]))}">{picture}<code>{e(str(link["task_key"]))}'
                f'</code><span class="badge">{e(str(link["status"]))}</span></li>'
            )
        parts.append("</ol>")
        film = films.get(name)
        parts.append(
            f'<video class="film" controls preload="metadata" src="{e(quote(film))}"></video>'
            if film
            else '<p class="meta">no film yet: kling-batch stitch joins the links once all '
            "are made</p>"
        )
        parts.append("</div>")
    parts.append("</section>")
    return "\n".join(parts)
