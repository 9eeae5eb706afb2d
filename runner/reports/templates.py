"""The pages' templates (``runner/assets/*.html``): Jinja2, every value autoescaped, so
a prompt, a key or a reason from the network is text on the page, never markup. The
report and the review page share this one environment."""

from __future__ import annotations

import jinja2

PAGES = jinja2.Environment(
    loader=jinja2.PackageLoader("runner", "assets"),
    autoescape=jinja2.select_autoescape(["html"]),
    trim_blocks=False,
    keep_trailing_newline=True,
)
