"""The page's chains: each chain as one line of its links (each link's first picture,
key and status, in order) followed by its film, when ``kling-batch stitch`` (or the
run's end) has made it. A handful of chains per run: drawn in the page, not lazily."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote


def chains_view(
    rows: Sequence[Mapping[str, Any]], films: Mapping[str, str]
) -> list[dict[str, Any]]:
    """``rows``: the report's, in manifest order; ``films``: chain -> its film's link.
    What the template shows of each chain (links already quoted; it escapes)."""
    chains: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        if row.get("chain"):
            chains.setdefault(str(row["chain"]), []).append(row)
    return [
        {
            "name": name,
            "seconds": f"{sum(float(r['video_s'] or r['duration'] or 0) for r in links):.0f}",
            "made": sum(1 for r in links if r["video_path"]),
            "links": [
                {
                    "key": r["task_key"],
                    "status": r["status"],
                    "poster": quote(str(r["poster_path"])) if r.get("poster_path") else None,
                }
                for r in links
            ],
            "film": quote(films[name]) if name in films else None,
        }
        for name, links in chains.items()
    ]
