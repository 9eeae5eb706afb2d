"""Kling V2.1 on Novita: ``kling-v2.1-i2v``, ``kling-v2.1-i2v-master``, ``kling-v2.1-t2v-master``.

Pages:
- https://novita.ai/docs/api-reference/model-apis-kling-v2.1-i2v
- https://novita.ai/docs/api-reference/model-apis-kling-v2.1-i2v-master
- https://novita.ai/docs/api-reference/model-apis-kling-v2.1-t2v-master

What differs from the seed model: ``duration`` is sent as a *string* ("5" or "10"), the
guidance is called ``guidance_scale`` (a manifest may say ``cfg_scale``: one name drives
every model), there is no ``sound`` and no voices. ``kling-v2.1-i2v`` has ``mode``
(Standard 720p, Professional 1080p). Where the pages are silent or disagree: they give
the image only "at most 10 MB, at least 300x300" (the stricter aspect rule of the newer
models is applied anyway, see ``jobs.images``); guidance steps are 0.01 on the i2v pages
and 0.1 on the t2v page (any value in 0..1 is accepted here). No price is published on
Novita's pages we could read: the figures below are rough estimates, set your own with
``prices:`` or ``--price-per-second``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobs.contract import Field, Kind, Model, Wire
from jobs.forms import FIRST_FRAME_FORMS
from jobs.rules import flat_price

_DURATION = Field("duration", Wire.INT_AS_TEXT, default=5, choices=(5, 10))
_GUIDANCE = Field(
    "cfg_scale",
    Wire.NUMBER,
    api_name="guidance_scale",
    default=0.5,
    range=(0.0, 1.0),
    aliases=("guidance_scale",),
)
_PROMPTS = (
    Field("prompt", Wire.TEXT, required=True, prompt=True),
    Field("negative_prompt", Wire.TEXT, prompt=True),
)
_IMAGE = Field("image", Wire.IMAGE, required=True, forms=FIRST_FRAME_FORMS)
_RATIOS = Field("aspect_ratio", Wire.CHOICE, default="16:9", choices=("16:9", "9:16", "1:1"))


def _by_mode(values: Mapping[str, Any]) -> str:
    return "professional" if values.get("mode") == "Professional" else "standard"


I2V = Model(
    name="kling-v2.1-i2v",
    kind=Kind.IMAGE_TO_VIDEO,
    doc_url="https://novita.ai/docs/api-reference/model-apis-kling-v2.1-i2v",
    fields=(
        _IMAGE,
        *_PROMPTS,
        Field("mode", Wire.CHOICE, default="Standard", choices=("Standard", "Professional")),
        _DURATION,
        _GUIDANCE,
    ),
    prices={"standard": 0.056, "professional": 0.098},
    tier=_by_mode,
    notes="mode Standard (720p) or Professional (1080p); duration sent as a string",
)

I2V_MASTER = Model(
    name="kling-v2.1-i2v-master",
    kind=Kind.IMAGE_TO_VIDEO,
    doc_url="https://novita.ai/docs/api-reference/model-apis-kling-v2.1-i2v-master",
    fields=(
        _IMAGE,
        *_PROMPTS,
        _DURATION,
        _GUIDANCE,
    ),
    prices={"standard": 0.28},
    tier=flat_price,
    notes="1080p; duration sent as a string",
)

T2V_MASTER = Model(
    name="kling-v2.1-t2v-master",
    kind=Kind.TEXT_TO_VIDEO,
    doc_url="https://novita.ai/docs/api-reference/model-apis-kling-v2.1-t2v-master",
    fields=(*_PROMPTS, _DURATION, _RATIOS, _GUIDANCE),
    prices={"standard": 0.28},
    tier=flat_price,
    notes="text to video: no image; duration sent as a string",
)

MODELS = (I2V, I2V_MASTER, T2V_MASTER)
